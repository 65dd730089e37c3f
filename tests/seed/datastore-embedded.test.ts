import t from 'tap'
import { listAll, MAX_VALUE_BYTES, type DatastoreEntry } from '../../lib/storage/datastore.js'
import { MIGRATIONS, openEmbeddedDatastore, type Migration } from '../../seed/datastore-embedded.js'
import { testDir } from '../helpers/temp-dir.js'

const tmp = () => testDir('espra-ds-')

t.test('records survive close and reopen', async (t) => {
  const dir = tmp()
  const ds = await openEmbeddedDatastore({ dir })
  t.equal(ds.schemaVersion, MIGRATIONS.length)
  const file = { size: 12, contentType: 'text/plain', storageKey: 'files/ab/abcdef', encodings: { br: { key: 'files/ab/abcdef.br', size: 9 } } }
  await ds.put('files', 'abcdef', file)
  await ds.put('vhosts', 'example.com/index.html', { file: 'abcdef' })
  await ds.put('uploadTokens', 'tok-1', { expiresAt: 1 })
  t.equal(await ds.delete('uploadTokens', 'tok-1'), true)
  t.equal(await ds.delete('uploadTokens', 'tok-1'), false)
  await ds.close()
  await t.rejects(ds.get('files', 'abcdef'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' }, 'a closed store refuses work')

  const again = await openEmbeddedDatastore({ dir })
  t.teardown(() => again.close())
  t.same(await again.get('files', 'abcdef'), file)
  t.same(await again.get('vhosts', 'example.com/index.html'), { file: 'abcdef' })
  t.equal(await again.get('uploadTokens', 'tok-1'), null)
  t.equal(await again.get('builds', 'abcdef'), null, 'kinds are separate')
})

t.test('list: key order, prefix, pages', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: tmp() })
  t.teardown(() => ds.close())
  for (const host of ['b.example', 'a.example', 'a.example2']) {
    for (const path of ['/', '/x', '/a/b']) await ds.put('vhosts', `${host}${path}`, { host, path })
  }
  const page = await ds.list('vhosts', { prefix: 'a.example/' })
  t.same(page.entries.map((e) => e.key), ['a.example/', 'a.example/a/b', 'a.example/x'])
  t.equal(page.next, null)
  const first = await ds.list('vhosts', { limit: 4 })
  t.same(first.entries.map((e) => e.key), ['a.example/', 'a.example/a/b', 'a.example/x', 'a.example2/'])
  t.equal(first.next, 'a.example2/')
  const second = await ds.list('vhosts', { limit: 4, after: first.next! })
  t.same(second.entries.map((e) => e.key), ['a.example2/a/b', 'a.example2/x', 'b.example/', 'b.example/a/b'])
  const all: DatastoreEntry[] = []
  for await (const e of listAll(ds, 'vhosts')) all.push(e)
  t.equal(all.length, 9)
  t.same((await ds.list('vhosts', { prefix: 'b.example/', after: 'a' })).entries.length, 3, 'an `after` before the prefix starts at the prefix')
  t.same((await ds.list('builds')).entries, [])
})

t.test('bad input is refused with a code naming the field', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: tmp() })
  t.teardown(() => ds.close())
  const invalid = (field: string) => ({ code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field } })
  await t.rejects(ds.get('nope' as 'files', 'k'), invalid('kind'))
  await t.rejects(ds.get('files', ''), invalid('key'))
  await t.rejects(ds.get('files', 'a\0b'), invalid('key'))
  await t.rejects(ds.get('files', 'k'.repeat(513)), invalid('key'))
  await t.rejects(ds.put('files', 'k', [1, 2] as unknown as Record<string, unknown>), invalid('value'))
  await t.rejects(ds.put('files', 'k', { big: 'x'.repeat(MAX_VALUE_BYTES) }), invalid('value'))
  await t.rejects(ds.list('files', { limit: 0 }), invalid('limit'))
  await t.rejects(ds.list('files', { prefix: 'a\nb' }), invalid('prefix'))
})

t.test('consume is single-use under concurrency', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: tmp() })
  t.teardown(() => ds.close())
  for (let round = 0; round < 20; round++) {
    await ds.put('uploadTokens', `t${round}`, { round })
    const results = await Promise.all(Array.from({ length: 25 }, () => ds.consume('uploadTokens', `t${round}`)))
    const winners = results.filter((r) => r !== null)
    t.same(winners, [{ round }], `round ${round}: exactly one of 25 got the token`)
  }
  t.equal(await ds.consume('uploadTokens', 'never'), null)
})

t.test('putIf: compare-and-set on named fields, one winner under concurrency', async (t) => {
  const ds = await openEmbeddedDatastore({ dir: tmp() })
  t.teardown(() => ds.close())
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
  await t.rejects(ds.putIf('tusUploads', 'u', { offset: 1 }, {}), { code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field: 'match' } })
  await t.rejects(ds.putIf('tusUploads', 'u', { offset: 1 }, { a: [1] } as never), { code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field: 'match' } })
})

t.test('an old store is migrated at open, in order, once', async (t) => {
  const dir = tmp()
  const v1 = await openEmbeddedDatastore({ dir })
  await v1.put('files', 'h1', { size: 5, type: 'text/plain' })
  await v1.put('files', 'h2', { size: 7, type: 'image/png' })
  await v1.close()

  // A later release renames `type` to `contentType` in file records.
  const ran: number[] = []
  const history: Migration[] = [
    ...MIGRATIONS,
    {
      version: 2, description: 'files: type -> contentType',
      up({ kinds }) {
        ran.push(2)
        for (const { key, value } of kinds.files.getRange({})) {
          const { type, ...rest } = value
          kinds.files.putSync(key, { ...rest, contentType: type })
        }
      },
    },
    { version: 3, description: 'deploys: nothing yet', up: () => void ran.push(3) },
  ]
  const v3 = await openEmbeddedDatastore({ dir, migrations: history })
  t.equal(v3.schemaVersion, 3)
  t.same(ran, [2, 3])
  t.same(await v3.get('files', 'h1'), { size: 5, contentType: 'text/plain' })
  t.same(await v3.get('files', 'h2'), { size: 7, contentType: 'image/png' })
  await v3.close()

  const reopened = await openEmbeddedDatastore({ dir, migrations: history })
  t.same(ran, [2, 3], 'nothing runs twice')
  await reopened.close()

  await t.rejects(openEmbeddedDatastore({ dir }), { code: 'ESPRA_ERR_DATASTORE_SCHEMA', details: { found: 3, known: MIGRATIONS.length } }, 'an older build refuses a newer store')
})

t.test('a failing migration leaves the store as it was', async (t) => {
  const dir = tmp()
  const v1 = await openEmbeddedDatastore({ dir })
  await v1.put('builds', 'b1', { n: 1 })
  await v1.close()
  const broken: Migration[] = [
    ...MIGRATIONS,
    {
      version: 2, description: 'fails halfway',
      up({ kinds }) {
        kinds.builds.putSync('b1', { n: 2 })
        throw new Error('migration bug')
      },
    },
  ]
  await t.rejects(openEmbeddedDatastore({ dir, migrations: broken }), { message: 'migration bug' })
  const still = await openEmbeddedDatastore({ dir })
  t.teardown(() => still.close())
  t.equal(still.schemaVersion, 1)
  t.same(await still.get('builds', 'b1'), { n: 1 }, 'the half-done change was rolled back')
})
