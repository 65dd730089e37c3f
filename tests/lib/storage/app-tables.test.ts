// The app's tables over the real embedded datastore (LMDB in a temp dir); the clock is passed in.
import t from 'tap'
import { createAppTables, isExpiredRow } from '../../../lib/storage/app-tables.js'
import { openEmbeddedDatastore } from '../../../seed/datastore-embedded.js'
import { testDir } from '../../helpers/temp-dir.js'

t.test('rows, TTL, paging past expired rows, and the sweep', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: testDir('espra-tables-') })
  t.teardown(() => ds.close())
  let now = 1_000_000
  const tables = createAppTables(ds, () => now)

  for (let i = 0; i < 10; i++) await tables.set('t', `k${i}`, i, i % 2 === 0 ? 100 : 0)
  await tables.set('u', 'k0', 'other table')
  t.equal(await tables.get('t', 'k4'), 4)
  now += 100
  t.equal(await tables.get('t', 'k4'), undefined, 'expired exactly at its TTL')
  t.equal(await tables.get('t', 'k5'), 5, 'no TTL: kept')

  // Five live rows (odd keys) among five expired ones, read two at a time.
  const seen: string[] = []
  let after: string | undefined
  for (let pages = 0; pages < 10; pages++) {
    const page = await tables.list('t', { limit: 2, ...(after !== undefined ? { after } : {}) })
    seen.push(...page.rows.map((r) => r.key))
    if (page.next === null) break
    after = page.next
  }
  t.same(seen, ['k1', 'k3', 'k5', 'k7', 'k9'], 'every live row once, in order, none expired')
  t.same((await tables.list('t', { prefix: 'k3' })).rows.map((r) => r.key), ['k3'], 'by prefix')

  t.equal(await tables.delete('t', 'k0'), false, 'deleting an expired row reports no live row')
  t.equal(await ds.removeWhere('appTables', (row) => isExpiredRow(row, now)), 4, 'the sweep deletes the other expired rows')
  t.equal((await ds.list('appTables', { prefix: 't/' })).entries.length, 5, 'live rows stay')
  t.equal(await tables.get('u', 'k0'), 'other table')

  await tables.set('t', 'k1', 'renewed', 50)
  t.equal(await ds.removeWhere('appTables', (row) => isExpiredRow(row, now)), 0, 'a row with time left is kept')

  for (const [call, field] of [
    [() => tables.get('', 'a'), 'table'],
    [() => tables.get('T', 'a'), 'table'],
    [() => tables.set('t', 'a\nb', 1), 'key'],
    [() => tables.set('t', 'x'.repeat(401), 1), 'key'],
    [() => tables.set('t', 'a', 1, -1), 'ttlMs'],
    [() => tables.set('t', 'a', undefined), 'value'],
    [() => tables.set('t', 'a', 'x'.repeat(70_000)), 'value'],
    [() => tables.list('t', { limit: 0 }), 'limit'],
  ] as const) {
    await t.rejects(call(), { code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field } }, `bad ${field} refused`)
  }
})
