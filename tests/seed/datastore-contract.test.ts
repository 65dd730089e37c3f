// The Datastore contract: the same cases against both backends the seed opens (seed/stores.ts):
// embedded (LMDB in a temp dir) and PostgreSQL (a real server started here, a fresh database per case).
import t, { type Test } from 'tap'
import { createAppTables } from '../../lib/storage/app-tables.js'
import { listAll, MAX_VALUE_BYTES, type DatastoreEntry } from '../../lib/storage/datastore.js'
import { openSeedStores, type SeedStores } from '../../seed/stores.js'
import { captureLog, seedConfig } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'

const postgres = await startPostgres(t)

const backends: [string, () => Promise<string>][] = [
  ['embedded', async () => 'embedded'],
  ['postgres', () => postgres.createDatabase()],
]

for (const [name, datastore] of backends) {
  t.test(name, async (t) => {
    // Each case has a store of its own.
    const open = async (t: Test): Promise<SeedStores> => {
      const stores = await openSeedStores(seedConfig({ datastore: await datastore() }), captureLog('silent').log)
      t.teardown(() => stores.close())
      return stores
    }

    t.test('get, put, delete; kinds are separate; values keep their types', async (t) => {
      const { datastore: ds } = await open(t)
      const file = { size: 12, contentType: 'text/plain', encodings: { br: { key: 'files/ab.br', size: 9 } }, bin: Buffer.from([1, 2, 3]), at: new Date(5), list: [1, 'a', null], yes: true }
      t.equal(await ds.get('files', 'abcdef'), null)
      await ds.put('files', 'abcdef', file)
      t.same(await ds.get('files', 'abcdef'), file)
      t.equal(((await ds.get('files', 'abcdef'))!['at'] as Date).getTime(), 5, 'a Date survives')
      await ds.put('files', 'abcdef', { size: 1 })
      t.same(await ds.get('files', 'abcdef'), { size: 1 }, 'put replaces')
      t.equal(await ds.get('builds', 'abcdef'), null, 'kinds are separate')
      t.equal(await ds.delete('files', 'abcdef'), true)
      t.equal(await ds.delete('files', 'abcdef'), false)
    })

    t.test('list: byte order, prefix, after, pages', async (t) => {
      const { datastore: ds } = await open(t)
      for (const host of ['b.example', 'a.example', 'a.example2', 'A.example', 'é.example', '_x%']) {
        for (const path of ['/', '/x', '/a/b']) await ds.put('vhosts', `${host}${path}`, { host, path })
      }
      const page = await ds.list('vhosts', { prefix: 'a.example/' })
      t.same(page.entries.map((e) => e.key), ['a.example/', 'a.example/a/b', 'a.example/x'])
      t.equal(page.next, null)
      const first = await ds.list('vhosts', { limit: 4 })
      t.same(first.entries.map((e) => e.key), ['A.example/', 'A.example/a/b', 'A.example/x', '_x%/'], 'binary order: upper case, then _, then lower case')
      t.equal(first.next, '_x%/')
      const second = await ds.list('vhosts', { limit: 4, after: first.next! })
      t.same(second.entries.map((e) => e.key), ['_x%/a/b', '_x%/x', 'a.example/', 'a.example/a/b'])
      t.same((await ds.list('vhosts', { prefix: '_x%' })).entries.length, 3, 'LIKE wildcards in a prefix are plain characters')
      t.same((await ds.list('vhosts', { prefix: '_' })).entries.length, 3)
      const all: DatastoreEntry[] = []
      for await (const e of listAll(ds, 'vhosts')) all.push(e)
      t.equal(all.length, 18)
      t.equal(all.at(-1)!.key, 'é.example/x', 'non-ASCII sorts after ASCII')
      t.same((await ds.list('vhosts', { prefix: 'b.example/', after: 'a' })).entries.length, 3, 'an `after` before the prefix starts at the prefix')
      t.same(await ds.list('vhosts', { prefix: 'a.example/', limit: 3 }), { entries: page.entries, next: null }, 'exactly a full last page: no next')
      t.same((await ds.list('builds')).entries, [])
    })

    t.test('bad input is refused with a code naming the field', async (t) => {
      const { datastore: ds } = await open(t)
      const invalid = (field: string) => ({ code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field } })
      await t.rejects(ds.get('nope' as 'files', 'k'), invalid('kind'))
      await t.rejects(ds.get('files', ''), invalid('key'))
      await t.rejects(ds.get('files', 'a\0b'), invalid('key'))
      await t.rejects(ds.get('files', 'k'.repeat(513)), invalid('key'))
      await t.rejects(ds.put('files', 'k', [1, 2] as unknown as Record<string, unknown>), invalid('value'))
      await t.rejects(ds.put('files', 'k', { big: 'x'.repeat(MAX_VALUE_BYTES) }), invalid('value'))
      await t.rejects(ds.list('files', { limit: 0 }), invalid('limit'))
      await t.rejects(ds.list('files', { prefix: 'a\nb' }), invalid('prefix'))
      await t.rejects(ds.putIf('files', 'k', { a: 1 }, {}), invalid('match'))
    })

    t.test('consume (delete-returning) is single-use under concurrency', async (t) => {
      const { datastore: ds } = await open(t)
      for (let round = 0; round < 10; round++) {
        await ds.put('uploadTokens', `t${round}`, { round })
        const results = await Promise.all(Array.from({ length: 20 }, () => ds.consume('uploadTokens', `t${round}`)))
        t.same(results.filter((r) => r !== null), [{ round }], `round ${round}: exactly one of 20 got the token`)
      }
      t.equal(await ds.consume('uploadTokens', 'never'), null)
    })

    t.test('putIf: compare-and-set on named fields, one winner under concurrency', async (t) => {
      const { datastore: ds } = await open(t)
      t.equal(await ds.putIf('tusUploads', 'u', { offset: 0 }, null), true, 'inserted when absent')
      t.equal(await ds.putIf('tusUploads', 'u', { offset: 9 }, null), false, 'not when present')
      t.equal(await ds.putIf('tusUploads', 'u', { offset: 5 }, { offset: 1 }), false, 'a field that differs')
      t.equal(await ds.putIf('tusUploads', 'none', { offset: 5 }, { offset: 0 }), false, 'no record')
      t.equal(await ds.putIf('tusUploads', 'u', { offset: 5 }, { offset: 0, done: null }), true, 'null matches a missing field')
      t.same(await ds.get('tusUploads', 'u'), { offset: 5 })
      for (let round = 0; round < 10; round++) {
        const from = 5 + round
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => ds.putIf('tusUploads', 'u', { offset: from + 1, by: i }, { offset: from })))
        t.equal(results.filter(Boolean).length, 1, `round ${round}: exactly one of 20 advanced the offset`)
      }
      const inserts = await Promise.all(Array.from({ length: 20 }, (_, i) => ds.putIf('tusUploads', 'new', { by: i }, null)))
      t.equal(inserts.filter(Boolean).length, 1, 'one of 20 concurrent inserts')
    })

    t.test('app-table rows with a TTL: read as absent once expired, then swept', async (t) => {
      const stores = await open(t)
      let now = Date.now()
      const tables = createAppTables(stores.datastore, () => now)
      for (let i = 0; i < 6; i++) await tables.set('sessions', `k${i}`, { i }, i % 2 === 0 ? 1000 : 0)
      await tables.set('other', 'k0', 'kept', 0)
      t.same(await tables.get('sessions', 'k0'), { i: 0 })
      now += 1000
      t.equal(await tables.get('sessions', 'k0'), undefined, 'expired exactly at its TTL')
      t.same((await tables.list('sessions')).rows.map((r) => r.key), ['k1', 'k3', 'k5'], 'list skips expired rows')
      t.equal(await tables.delete('sessions', 'k2'), false, 'deleting an expired row: there was no live row')
      t.equal(await stores.removeExpiredRows(now - 1), 0, 'nothing is due before its time')
      t.equal(await stores.removeExpiredRows(now), 2, 'the sweep deletes the two rows left')
      t.equal(await stores.datastore.get('appTables', 'sessions/k4'), null, 'gone from the store')
      t.same(await tables.get('sessions', 'k1'), { i: 1 }, 'rows without a TTL stay')
      await tables.set('sessions', 'k1', 'renewed', 5000)
      t.equal(await stores.removeExpiredRows(now + 4999), 0, 'a rewritten row carries its new TTL')
      t.equal(await stores.removeExpiredRows(now + 5000), 1)
    })

    t.test('records survive close and reopen; a closed store refuses work', async (t) => {
      const url = await datastore()
      const config = seedConfig({ datastore: url })
      const first = await openSeedStores(config, captureLog('silent').log)
      await first.datastore.put('builds', 'b1', { n: 1 })
      await first.close()
      await t.rejects(first.datastore.get('builds', 'b1'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
      const again = await openSeedStores(config, captureLog('silent').log)
      t.teardown(() => again.close())
      t.same(await again.datastore.get('builds', 'b1'), { n: 1 })
    })
  })
}
