// The Datastore over the meta port against a real seed (its embedded store), as other nodes use it.
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { listAll, type DatastoreEntry } from '../../../lib/storage/datastore.js'
import { startSeed } from '../../../seed/seed.js'
import { captureLog } from '../../helpers/meta.js'
import { client, nodeClient, startTestSeed } from '../../helpers/seed.js'

t.test('every op works over the meta port', async (t) => {
  const { port } = await startTestSeed(t)
  const link = await nodeClient(t, port, 'fileserver-1', { role: 'fileserver' })
  const ds = createDatastoreClient(link)
  t.equal(await ds.get('files', 'h1'), null)
  await ds.put('files', 'h1', { size: 3, contentType: 'text/plain', storageKey: 'files/h1', encodings: {}, bin: Buffer.from([1, 2, 3]) })
  t.same(await ds.get('files', 'h1'), { size: 3, contentType: 'text/plain', storageKey: 'files/h1', encodings: {}, bin: Buffer.from([1, 2, 3]) })
  t.equal(await ds.delete('files', 'h1'), true)
  t.equal(await ds.delete('files', 'h1'), false)
  for (let i = 0; i < 5; i++) await ds.put('deploys', `2026-11-22T00:0${i}`, { build: `b${i}` })
  const page = await ds.list('deploys', { prefix: '2026-11-22', limit: 3 })
  t.same(page.entries.map((e) => e.key), ['2026-11-22T00:00', '2026-11-22T00:01', '2026-11-22T00:02'])
  t.equal(page.next, '2026-11-22T00:02')
  const all: DatastoreEntry[] = []
  for await (const e of listAll(ds, 'deploys')) all.push(e)
  t.equal(all.length, 5)
  await ds.put('uploadTokens', 'tok', { path: '/up' })
  t.same(await ds.consume('uploadTokens', 'tok'), { path: '/up' })
  t.equal(await ds.consume('uploadTokens', 'tok'), null)
  await ds.close()
  t.ok(link.connected, 'closing the datastore leaves the link up')
})

t.test('consume is single-use across concurrent clients', async (t) => {
  const { port } = await startTestSeed(t)
  const links = await Promise.all([1, 2, 3, 4].map((i) => nodeClient(t, port, `fs-${i}`, { role: 'fileserver' })))
  const stores = links.map((l) => createDatastoreClient(l))
  for (let round = 0; round < 10; round++) {
    await stores[0]!.put('uploadTokens', `t${round}`, { round })
    const results = await Promise.all(stores.flatMap((s) => [s.consume('uploadTokens', `t${round}`), s.consume('uploadTokens', `t${round}`)]))
    t.equal(results.filter((r) => r !== null).length, 1, `round ${round}: one winner of 8`)
  }
})

t.test('putIf over the meta port: one winner among concurrent clients', async (t) => {
  const { port } = await startTestSeed(t)
  const links = await Promise.all([1, 2, 3].map((i) => nodeClient(t, port, `fs-p${i}`, { role: 'fileserver' })))
  const stores = links.map((l) => createDatastoreClient(l))
  t.equal(await stores[0]!.putIf('tusUploads', 'u', { offset: 0 }, null), true)
  for (let round = 0; round < 5; round++) {
    const results = await Promise.all(stores.flatMap((s, i) => [0, 1].map((j) => s.putIf('tusUploads', 'u', { offset: round + 1, by: `${i}.${j}` }, { offset: round }))))
    t.equal(results.filter(Boolean).length, 1, `round ${round}: one of 6 advanced the offset`)
  }
  t.match(await stores[1]!.get('tusUploads', 'u'), { offset: 5 })
  t.equal(await stores[2]!.putIf('tusUploads', 'u', { offset: 0 }, null), false, 'null match: only when absent')
})

t.test('bad bodies are answered with codes; the seed keeps serving', async (t) => {
  const { port, lines } = await startTestSeed(t)
  const raw = client(t, port)
  await raw.ready
  const cases: [string, unknown, string][] = [
    ['ds.get', 'nope', 'body'],
    ['ds.get', { kind: 'secrets', key: 'k' }, 'kind'],
    ['ds.get', { kind: 'files' }, 'key'],
    ['ds.get', { kind: 'files', key: 'a\0b' }, 'key'],
    ['ds.get', { kind: 'files', key: 'k'.repeat(600) }, 'key'],
    ['ds.put', { kind: 'files', key: 'k' }, 'value'],
    ['ds.put', { kind: 'files', key: 'k', value: [1] }, 'value'],
    ['ds.put', { kind: 'files', key: 'k', value: { big: 'x'.repeat(70_000) } }, 'value'],
    ['ds.delete', { kind: 1, key: 'k' }, 'kind'],
    ['ds.consume', { kind: 'uploadTokens', key: 42 }, 'key'],
    ['ds.list', { kind: 'files', limit: 5000 }, 'limit'],
    ['ds.list', { kind: 'files', prefix: 7 }, 'prefix'],
    ['ds.list', { kind: 'files', after: '' }, 'after'],
    ['ds.list', null, 'body'],
    ['ds.putIf', { kind: 'tusUploads', key: 'k', value: { a: 1 } }, 'match'],
    ['ds.putIf', { kind: 'tusUploads', key: 'k', value: { a: 1 }, match: { a: { b: 1 } } }, 'match'],
  ]
  for (const [op, body, field] of cases) {
    await t.rejects(raw.request(op, body), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, `${op} ${JSON.stringify(body)?.slice(0, 60)}`)
  }
  const ds = createDatastoreClient(raw)
  await ds.put('builds', 'b1', { ok: true })
  t.same(await ds.get('builds', 'b1'), { ok: true }, 'the same connection still works')
  t.notOk(lines.some((l) => l.msg === 'meta peer dropped'), 'nobody was dropped')
  await t.rejects(ds.put('builds', 'b2', [] as unknown as Record<string, unknown>), { code: 'ESPRA_ERR_DATASTORE_INVALID', details: { field: 'value' } }, 'the client checks before sending')
})

t.test('a list page stays within the frame limit', async (t) => {
  const { port } = await startTestSeed(t, { maxFrame: 64 * 1024 })
  const raw = client(t, port, { maxFrame: 64 * 1024 })
  await raw.ready
  const ds = createDatastoreClient(raw)
  for (let i = 0; i < 10; i++) await ds.put('builds', `b${i}`, { blob: 'x'.repeat(20_000) })
  const page = await ds.list('builds', { limit: 10 })
  t.ok(page.entries.length < 10 && page.entries.length > 0, `cut to ${page.entries.length} entries`)
  t.equal(page.next, page.entries[page.entries.length - 1]!.key)
  const all: DatastoreEntry[] = []
  for await (const e of listAll(ds, 'builds')) all.push(e)
  t.equal(all.length, 10, 'paging still reaches every entry')
})

t.test('records survive a seed restart', async (t) => {
  const first = await startTestSeed(t)
  const a = client(t, first.port)
  await a.ready
  await createDatastoreClient(a).put('vhosts', 'example.com/', { file: 'h1' })
  await first.seed.close()

  const seed = await startSeed({ config: { ...first.config, metaPort: 0 }, log: captureLog('silent').log })
  t.teardown(() => seed.close())
  const b = client(t, seed.port)
  await b.ready
  t.same(await createDatastoreClient(b).get('vhosts', 'example.com/'), { file: 'h1' })
})
