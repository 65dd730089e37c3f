// The datastore client's rule for a dropped link, against a real seed (its embedded store) that goes away and
// comes back on the same port: get/list/put/delete are sent again within the window, consume and putIf too with one op id;
// a link closed on purpose, a store closed, or a window of 0 end it at once. `counted` passes every request
// through to the real meta client and counts it, so the tests see how often an op was sent.
import t, { type Test } from 'tap'
import type { EspraError } from '../../../lib/core/errors.js'
import { EspraError as CodedError, type ErrorCode } from '../../../lib/core/errors.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createMetaClient, type MetaClient } from '../../../lib/transport/meta-client.js'
import { startMetaServer } from '../../../lib/transport/meta-server.js'
import { startSeed, type SeedHandle } from '../../../seed/seed.js'
import { captureLog, SECRET } from '../../helpers/meta.js'
import { client, startTestSeed, type TestSeed } from '../../helpers/seed.js'

function counted(link: MetaClient): { link: Pick<MetaClient, 'request'>; sent: Map<string, number> } {
  const sent = new Map<string, number>()
  return {
    sent,
    link: {
      request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
        sent.set(op, (sent.get(op) ?? 0) + 1)
        return link.request<T>(op, body, timeoutMs)
      },
    },
  }
}

/** The same seed (same data directory, same port) started again. */
async function restart(t: Test, first: TestSeed): Promise<SeedHandle> {
  const seed = await startSeed({ config: { ...first.config, metaPort: first.port }, log: captureLog('silent').log })
  t.teardown(() => seed.destroy())
  return seed
}

const linkDown = async (link: MetaClient) => {
  while (link.connected) await new Promise((resolve) => setImmediate(resolve))
}

t.test('puts in flight when the seed goes, and puts sent while it is away, all land once it is back', async (t) => {
  const first = await startTestSeed(t)
  const link = client(t, first.port, { reconnect: true, backoffMaxMs: 200 })
  await link.ready
  const { link: passing, sent } = counted(link)
  const ds = createDatastoreClient(passing)
  await ds.put('appTables', 'before', { v: 0 })
  await ds.put('appTables', 'listed', { v: 0 })
  await ds.put('appTables', 'gone', { v: 0 })

  // Twenty puts sent together, then the seed is gone before (some of) them are answered.
  const inFlight = Array.from({ length: 20 }, (_, i) => ds.put('appTables', `flight/${i}`, { v: i }))
  first.seed.destroy()
  await linkDown(link)
  const whileAway = Array.from({ length: 5 }, (_, i) => ds.put('appTables', `away/${i}`, { v: i }))
  const read = ds.get('appTables', 'before')
  const listed = ds.list('appTables', { prefix: 'listed' })
  const removed = ds.delete('appTables', 'gone')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok((sent.get('ds.put') ?? 0) > 26, `puts were sent again while the seed was away (${sent.get('ds.put')} sends for 26 puts)`)
  await restart(t, first)

  const results = await Promise.allSettled([...inFlight, ...whileAway])
  t.same(results.filter((r) => r.status === 'rejected'), [], 'every put resolved')
  t.same(await read, { v: 0 }, 'a get sent while the seed was away is answered')
  t.same((await listed).entries.map((e) => e.key), ['listed'], 'so is a list')
  t.equal(await removed, true, 'and a delete')
  const fresh = createDatastoreClient(link)
  const keys = (await fresh.list('appTables', { prefix: 'flight/', limit: 100 })).entries.map((e) => e.key)
  t.equal(keys.length, 20, 'every record of the puts in flight is there')
  t.equal((await fresh.list('appTables', { prefix: 'away/' })).entries.length, 5, 'and of the puts sent while away')
})

t.test('consume and putIf sent while the seed is away are sent again, with one op id each, and applied once it is back', async (t) => {
  const first = await startTestSeed(t)
  const link = client(t, first.port, { reconnect: true, backoffMaxMs: 200 })
  await link.ready
  const opIds = new Map<string, Set<unknown>>()
  const { link: passing, sent } = counted({
    ...link,
    request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
      opIds.set(op, (opIds.get(op) ?? new Set()).add((body as { opId?: unknown }).opId))
      return link.request<T>(op, body, timeoutMs)
    },
  } as MetaClient)
  const ds = createDatastoreClient(passing)
  await ds.put('uploadTokens', 'tok', { user: 'u' })
  first.seed.destroy()
  await linkDown(link)
  const consumed = ds.consume('uploadTokens', 'tok')
  const written = ds.putIf('tusUploads', 'u', { offset: 1 }, null)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok((sent.get('ds.consume') ?? 0) > 1 && (sent.get('ds.putIf') ?? 0) > 1, `both were sent again while the seed was away (${sent.get('ds.consume')}, ${sent.get('ds.putIf')})`)
  await restart(t, first)
  t.same(await consumed, { user: 'u' }, 'consume answers the record once the seed is back')
  t.equal(await written, true, 'putIf writes')
  t.same([...opIds.get('ds.consume')!].length, 1, 'every consume attempt carried the same op id')
  t.same([...opIds.get('ds.putIf')!].length, 1, 'and every putIf attempt')
  t.same(await ds.get('uploadTokens', 'tok'), null, 'the token is consumed')
  t.same(await ds.get('tusUploads', 'u'), { offset: 1 })
})

t.test('the window ends: the last error is thrown', async (t) => {
  const first = await startTestSeed(t)
  const link = client(t, first.port, { reconnect: true, backoffMaxMs: 200 })
  await link.ready
  const { link: passing, sent } = counted(link)
  first.seed.destroy()
  await linkDown(link)
  const err = await createDatastoreClient(passing, { retryWindowMs: 600 }).put('appTables', 'k', { v: 1 }).catch((e: EspraError) => e)
  t.match(err, { code: 'ESPRA_ERR_META_CLOSED' }, 'rejected once the window passed')
  t.ok(sent.get('ds.put')! > 1, `sent ${sent.get('ds.put')} times first`)
  sent.clear()
  await t.rejects(createDatastoreClient(passing, { retryWindowMs: 0 }).get('appTables', 'k'), { code: 'ESPRA_ERR_META_CLOSED' }, 'window 0: fails at once')
  t.equal(sent.get('ds.get'), 1, 'window 0: sent once')
})

t.test('a link closed on purpose, or the store closed, ends the waiting at once', async (t) => {
  const first = await startTestSeed(t)
  const link = client(t, first.port, { reconnect: true, backoffMaxMs: 200 })
  await link.ready
  const { link: passing, sent } = counted(link)
  const ds = createDatastoreClient(passing)

  first.seed.destroy()
  await linkDown(link)
  const waiting = ds.put('appTables', 'k', { v: 1 }).catch((e: EspraError) => e)
  await new Promise((resolve) => setTimeout(resolve, 50))
  await ds.close()
  t.match(await waiting, { code: 'ESPRA_ERR_META_CLOSED' }, 'closing the store rejects the op waiting to be sent again')
  const sentBefore = sent.get('ds.put')

  const other = createDatastoreClient(passing)
  const pending = other.get('appTables', 'k').catch((e: EspraError) => e)
  await new Promise((resolve) => setTimeout(resolve, 50))
  await link.close()
  t.match(await pending, { code: 'ESPRA_ERR_META_CLOSED', details: { stopped: true } }, 'the link closed: its stopped error is thrown')
  sent.clear()
  await t.rejects(other.put('appTables', 'k', { v: 2 }), { code: 'ESPRA_ERR_META_CLOSED', details: { stopped: true } })
  t.equal(sent.get('ds.put'), 1, 'an op on a closed link is sent once')
  t.equal(sent.get('ds.get') ?? 0, 0, 'and the waiting get was not sent again after the close')
  t.ok(sentBefore !== undefined, 'the put was sent before the store closed')
})

t.test('ESPRA_ERR_SEED_NOT_LEADER is sent again (putIf with its op id); other errors are not', async (t) => {
  // A real meta server whose ds ops answer what the test says: the first two puts and putIfs are refused as by a
  // seed that does not lead (the client then leaves it and links again), get with a database outage.
  // `served` counts what reached the server (sends made while the link was down fail before it).
  const served = new Map<string, number>()
  const putIfIds = new Set<unknown>()
  const serve = (op: string, answer: () => unknown) => [op, (_body: unknown): unknown => {
    served.set(op, (served.get(op) ?? 0) + 1)
    return answer()
  }] as const
  const refuse = (code: ErrorCode) => {
    throw new CodedError(code, `refused: ${code}`)
  }
  const server = await startMetaServer({
    host: '127.0.0.1', port: 0, secret: SECRET, seedId: 'seed', maxFrame: 64 * 1024, log: captureLog('silent').log, messages: new Map(),
    handlers: new Map([
      ['ping', () => ({})],
      serve('ds.put', () => (served.get('ds.put')! <= 2 ? refuse('ESPRA_ERR_SEED_NOT_LEADER') : {})),
      ['ds.putIf', (body: unknown): unknown => {
        served.set('ds.putIf', (served.get('ds.putIf') ?? 0) + 1)
        putIfIds.add((body as { opId?: unknown }).opId)
        return served.get('ds.putIf')! <= 2 ? refuse('ESPRA_ERR_SEED_NOT_LEADER') : { written: true }
      }],
      serve('ds.get', () => refuse('ESPRA_ERR_DATASTORE_UNAVAILABLE')),
    ]),
  })
  t.teardown(() => server.destroy())
  const link = createMetaClient({ seeds: [`127.0.0.1:${server.port}`], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 64 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 100 })
  t.teardown(() => link.destroy())
  await link.ready
  const { link: passing } = counted(link)
  const ds = createDatastoreClient(passing)
  await ds.put('appTables', 'k', { v: 1 })
  t.equal(served.get('ds.put'), 3, 'the put was answered on its third arrival')
  t.equal(await ds.putIf('appTables', 'k', { v: 2 }, null), true, 'putIf answered')
  t.equal(served.get('ds.putIf'), 3, 'on its third arrival')
  t.equal(putIfIds.size, 1, 'each arrival with the same op id')
  t.match([...putIfIds][0], /^[A-Za-z0-9_-]{22}$/)
  await t.rejects(ds.get('appTables', 'k'), { code: 'ESPRA_ERR_DATASTORE_UNAVAILABLE' })
  t.equal(served.get('ds.get'), 1, 'an error that is not about the link: not sent again')
})
