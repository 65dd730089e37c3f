// Drain orders in the seed (seed/drains.ts): admin-only ops, precise refusals, routing that drops a drained
// node before its heartbeat says so, the order pushed to the node, and orders that survive a seed restart.
import t from 'tap'
import type { NodeView, RoutingTable } from '../../lib/transport/meta-shapes.js'
import { sleep, until } from '../helpers/meta.js'
import { client, nodeClient, startTestSeed, watcher } from '../helpers/seed.js'

const ids = (table: RoutingTable | undefined) => table?.nodes.map((n) => n.id)

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  try {
    await p
  } catch (err) {
    return err as { code: string; message: string; details?: Record<string, unknown> }
  }
  throw new Error('expected a refusal')
}

t.test('hostile or wrong input is refused with a precise error; the connection stays up', async (t) => {
  const { port } = await startTestSeed(t)
  const node = await nodeClient(t, port, 'live-a')
  await nodeClient(t, port, 'seed-x', { role: 'seed' })
  const admin = client(t, port)
  await admin.ready

  for (const op of ['node.drain', 'node.undrain', 'node.drains']) {
    const err = await refusal(node.request(op, { id: 'live-a' }))
    t.equal(err.code, 'ESPRA_ERR_META_FORBIDDEN', `${op} from a node peer`)
  }
  const cases: [unknown, string][] = [
    [null, 'body'], ['live-a', 'body'], [[1, 2], 'body'], [{}, 'id'], [{ id: '' }, 'id'], [{ id: '../etc' }, 'id'],
    [{ id: 'x'.repeat(65) }, 'id'], [{ id: 7 }, 'id'], [{ id: 'live-a', then: 'reboot' }, 'then'], [{ id: 'live-a', then: 1 }, 'then'],
    [{ id: 'live-a', graceMs: -1 }, 'graceMs'], [{ id: 'live-a', graceMs: 1.5 }, 'graceMs'], [{ id: 'live-a', graceMs: '20s' }, 'graceMs'],
    [{ id: 'live-a', graceMs: 3_600_001 }, 'graceMs'], [{ id: 'live-a', force: 'yes' }, 'force'],
  ]
  for (const [body, field] of cases) {
    const err = await refusal(admin.request('node.drain', body))
    t.equal(err.code, 'ESPRA_ERR_META_BAD_REQUEST', `node.drain ${JSON.stringify(body)}`)
    t.equal(err.details?.['field'], field, `names ${field}`)
  }
  t.equal((await refusal(admin.request('node.undrain', { id: 'a/b' }))).details?.['field'], 'id')
  t.equal((await refusal(admin.request('node.undrain', 'x'))).details?.['field'], 'body')

  const unknown = await refusal(admin.request('node.drain', { id: 'nobody' }))
  t.equal(unknown.code, 'ESPRA_ERR_NODE_UNKNOWN')
  t.match(unknown.message, /no registered node is called 'nobody'/)
  const seed = await refusal(admin.request('node.drain', { id: 'seed-x' }))
  t.equal(seed.code, 'ESPRA_ERR_META_BAD_REQUEST')
  t.match(seed.message, /seeds are not drained/)
  t.same(await admin.request('node.drains', {}), { drains: [] }, 'nothing was stored by any refusal')

  const forced = await admin.request<{ registered: boolean; order: { then: string; graceMs: number } }>('node.drain', { id: 'nobody', force: true })
  t.match(forced, { registered: false, order: { then: 'stop', graceMs: 20_000 } }, 'force stores an order for an id not registered; the defaults are stop and 20 s')
  t.match(await admin.request('node.undrain', { id: 'live-b' }), { undrained: false, previous: null }, 'undrain of a node not drained says so')
  t.match(await admin.request('node.undrain', { id: 'nobody' }), { undrained: true, registered: false })
  t.equal(((await admin.request('ping', {})) as { now: number }).now > 0, true, 'the admin connection is still up')
})

t.test('a drained Live node leaves routing at once, hears its order, shows it; undrain puts it back', async (t) => {
  const { port } = await startTestSeed(t)
  const proxy = await watcher(t, port, { routing: 'us-1' })
  const pushes: unknown[] = []
  await nodeClient(t, port, 'live-a', {}, { onPush: (op, body) => op === 'drain' && pushes.push(body) })
  await nodeClient(t, port, 'live-b')
  await until(() => ids(proxy.tables.at(-1))?.length === 2, 2000, 'both routed')
  const admin = client(t, port)
  await admin.ready

  const answer = await admin.request<{ order: { then: string; graceMs: number; at: number } }>('node.drain', { id: 'live-a', then: 'idle', graceMs: 1500 })
  t.match(answer, { id: 'live-a', registered: true, previous: null, order: { then: 'idle', graceMs: 1500 } })
  // The node client keeps heartbeating `ok`: routing must not wait for it to say `draining`.
  t.same(ids(await admin.request<RoutingTable>('routing', { region: 'us-1' })), ['live-b'], 'out of the table as the order is answered')
  await until(() => ids(proxy.tables.at(-1))?.join() === 'live-b', 2000, 'the push without live-a')
  await until(() => pushes.length === 1, 2000, 'the order pushed to the node')
  t.same(pushes[0], { order: answer.order })
  const view = (await admin.request<NodeView[]>('nodes', {})).find((n) => n.id === 'live-a')!
  t.same(view.drain, answer.order, 'the node view carries the order')
  t.equal((await admin.request<NodeView[]>('nodes', {})).find((n) => n.id === 'live-b')!.drain, null)
  t.match(await admin.request('node.drains', {}), { drains: [{ id: 'live-a', then: 'idle', graceMs: 1500, registered: true }] })

  await sleep(200)
  t.equal(ids(proxy.tables.at(-1))?.join(), 'live-b', 'heartbeats saying ok do not bring it back')
  t.match(await admin.request('node.undrain', { id: 'live-a' }), { undrained: true, registered: true, previous: answer.order })
  await until(() => ids(proxy.tables.at(-1))?.length === 2, 2000, 'back in the table')
  await until(() => pushes.length === 2, 2000, 'the lifted order pushed')
  t.same(pushes[1], { order: null })
})

t.test('orders survive a seed restart: loaded at start, given to the node when it registers', async (t) => {
  const first = await startTestSeed(t)
  await nodeClient(t, first.port, 'live-a')
  const admin = client(t, first.port)
  await admin.ready
  const { order } = await admin.request<{ order: unknown }>('node.drain', { id: 'live-a', then: 'stop', graceMs: 0 })
  admin.destroy()
  first.seed.destroy()

  const second = await startTestSeed(t, { dataDir: first.config.dataDir, blobDir: first.config.blobDir })
  const proxy = await watcher(t, second.port, { routing: 'us-1' })
  const pushes: unknown[] = []
  await nodeClient(t, second.port, 'live-a', {}, { onPush: (op, body) => op === 'drain' && pushes.push(body) })
  await nodeClient(t, second.port, 'live-b')
  await until(() => pushes.length === 1, 2000, 'the stored order pushed on register')
  t.same(pushes[0], { order }, 'the same order, with its original time')
  await until(() => ids(proxy.tables.at(-1))?.join() === 'live-b', 2000, 'only live-b is routed')
  t.ok(second.lines.some((l) => l.msg === 'drained nodes loaded'), 'the seed logs what it loaded')
})

t.test('a malformed stored order is ignored with a warning at start, not trusted', async (t) => {
  const first = await startTestSeed(t)
  const admin = client(t, first.port)
  await admin.ready
  await admin.request('ds.put', { kind: 'cluster', key: 'drain/live-a', value: { then: 'reboot', graceMs: 5, at: 1 } })
  await admin.request('ds.put', { kind: 'cluster', key: 'drain/live-b', value: { then: 'idle', graceMs: -1, at: 1 } })
  admin.destroy()
  first.seed.destroy()

  const second = await startTestSeed(t, { dataDir: first.config.dataDir, blobDir: first.config.blobDir })
  const warnings = second.lines.filter((l) => l.msg === 'a stored drain order is malformed: ignored (admin undrain removes it)')
  t.same(warnings.map((l) => l['key']).sort(), ['drain/live-a', 'drain/live-b'])
  const proxy = await watcher(t, second.port, { routing: 'us-1' })
  await nodeClient(t, second.port, 'live-a')
  await until(() => ids(proxy.tables.at(-1))?.join() === 'live-a', 2000, 'live-a routed')
  const again = client(t, second.port)
  await again.ready
  t.same(await again.request('node.drains', {}), { drains: [] })
  t.match(await again.request('node.undrain', { id: 'live-a' }), { undrained: false }, 'undrain answers not drained')
  t.same(await again.request('ds.get', { kind: 'cluster', key: 'drain/live-a' }), { value: null }, 'and removes the malformed record')
})

t.test('a restart order names the process; the same process gets it again (seed restart), a new one lifts it', async (t) => {
  const first = await startTestSeed(t)
  const pushes: unknown[] = []
  const startedAt = Date.now() - 5000
  const old = await nodeClient(t, first.port, 'live-a', { startedAt }, { onPush: (op, body) => op === 'drain' && pushes.push(body) })
  await nodeClient(t, first.port, 'live-b')
  const admin = client(t, first.port)
  await admin.ready
  const unknown = await refusal(admin.request('node.drain', { id: 'nobody', then: 'restart', force: true }))
  t.equal(unknown.code, 'ESPRA_ERR_NODE_UNKNOWN', 'a node that is not running cannot be restarted, force or not')
  t.match(unknown.message, /only a running node can be restarted/)

  const { order } = await admin.request<{ order: Record<string, unknown> }>('node.drain', { id: 'live-a', then: 'restart', graceMs: 0 })
  t.match(order, { then: 'restart', graceMs: 0, restartOf: startedAt }, 'the order names the process by its start time')
  await until(() => pushes.length === 1, 2000, 'the order pushed')
  t.same(pushes[0], { order })
  admin.destroy()
  first.seed.destroy()
  old.destroy()

  // The seed restarts before the node stops: the same process registers again and gets the same order.
  const second = await startTestSeed(t, { dataDir: first.config.dataDir, blobDir: first.config.blobDir })
  const proxy = await watcher(t, second.port, { routing: 'us-1' })
  const again = await nodeClient(t, second.port, 'live-a', { startedAt }, { onPush: (op, body) => op === 'drain' && pushes.push(body) })
  await nodeClient(t, second.port, 'live-b')
  await until(() => pushes.length === 2, 2000, 'the stored order pushed to the same process')
  t.same(pushes[1], { order })
  await until(() => ids(proxy.tables.at(-1))?.join() === 'live-b', 2000, 'out of routing')
  await again.request('deregister', {})
  again.destroy()

  // A new process (another start time) registers: the restart is done; the order is lifted, never pushed to it.
  const fresh: unknown[] = []
  await nodeClient(t, second.port, 'live-a', { startedAt: Date.now() }, { onPush: (op, body) => op === 'drain' && fresh.push(body) })
  await until(() => ids(proxy.tables.at(-1))?.length === 2, 2000, 'back in routing')
  const admin2 = client(t, second.port)
  await admin2.ready
  t.same(await admin2.request('node.drains', {}), { drains: [] }, 'the order is gone')
  t.same(await admin2.request('ds.get', { kind: 'cluster', key: 'drain/live-a' }), { value: null }, 'from the datastore too')
  t.equal((await admin2.request<NodeView[]>('nodes', {})).find((n) => n.id === 'live-a')!.drain, null)
  t.same(fresh, [{ order: null }], 'the new process only hears that it is not drained')
  t.ok(second.lines.some((l) => l.msg === 'node restarted under its restart order: order lifted, back in service'), 'logged')
})
