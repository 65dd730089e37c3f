import t from 'tap'
import type { EspraError } from '../../lib/core/errors.js'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { Registry, type RegistryLink } from '../../seed/registry.js'
import { heartbeat, nodeInfo, sleep, until } from '../helpers/meta.js'
import { client, nodeClient, startTestSeed, watcher } from '../helpers/seed.js'

const nodesOf = (c: { request<T>(op: string, body: unknown): Promise<T> }) => c.request<NodeView[]>('nodes', {})

t.test('register, heartbeat and the NodeView shape', async (t) => {
  const { port } = await startTestSeed(t)
  const watch = await watcher(t, port, { events: true })
  const node = await nodeClient(t, port, 'live-1', { role: 'live', port: 9100 })
  await until(() => watch.events.length === 1)
  t.match(watch.events[0], { type: 'joined', node: { id: 'live-1', role: 'live', port: 9100, health: 'ok', connected: true } })
  await sleep(120)
  const [view] = await nodesOf(watch.client)
  t.same(Object.keys(view!).sort(), [
    'address', 'build', 'children', 'childrenWanted', 'connected', 'drain', 'health', 'heartbeatAgeMs', 'id', 'load', 'metricsPort',
    'pid', 'port', 'region', 'registeredAt', 'role', 'startedAt', 'version',
  ])
  t.ok(view!.heartbeatAgeMs < 100, `heartbeats keep the age low (${view!.heartbeatAgeMs} ms)`)
  t.same(view!.load, { connections: 0, rps: 0, rssBytes: 1, lagMs: 0 }, 'load comes from heartbeats')
  node.setHealth('draining')
  await until(() => watch.events.some((e) => e.type === 'health' && e.node.health === 'draining'), 2000, 'a health event')
  t.equal(watch.events.filter((e) => e.type === 'health').length, 1, 'one event per health change, not per heartbeat')
  const filtered = await watch.client.request<NodeView[]>('nodes', { role: 'proxy' })
  t.same(filtered, [], 'nodes can be filtered')
})

t.test('suspect at once on close, dead after the heartbeat timeout', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 300 })
  const watch = await watcher(t, port, { events: true })
  const node = await nodeClient(t, port, 'n-close')
  node.stopHeartbeat()
  await node.close()
  await until(() => watch.events.find((e) => e.type === 'health' && e.node.health === 'suspect'), 2000, 'suspect')
  const suspect = watch.events.find((e) => e.type === 'health')!
  t.match(suspect, { reason: 'disconnected', node: { connected: false } })
  t.match(await nodesOf(watch.client), [{ id: 'n-close', health: 'suspect', connected: false }], 'still listed while suspect')
  const left = await until(() => watch.events.find((e) => e.type === 'left'), 2000, 'left')
  t.equal(left.reason, 'timeout')
  t.ok(left.at - suspect.at >= 200, 'removed only after the timeout')
  t.same(await nodesOf(watch.client), [])
})

t.test('a silent node on an open connection is evicted and its link closed', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 300 })
  const watch = await watcher(t, port, { events: true })
  const node = await nodeClient(t, port, 'n-silent', {}, { keepAliveMs: 0 })
  node.stopHeartbeat()
  const left = await until(() => watch.events.find((e) => e.type === 'left'), 2000, 'left')
  t.match(left, { reason: 'timeout', node: { id: 'n-silent' } })
  await until(() => !node.connected, 2000, 'the seed to close the evicted link')
})

t.test('deregister leaves at once', async (t) => {
  const { port } = await startTestSeed(t)
  const watch = await watcher(t, port, { events: true })
  const node = await nodeClient(t, port, 'n-dereg')
  t.same(await node.request('deregister', {}), {})
  await until(() => watch.events.find((e) => e.type === 'left'))
  t.match(watch.events.at(-1), { type: 'left', reason: 'deregistered' })
  await node.close()
  await sleep(50)
  t.notOk(watch.events.some((e) => e.type === 'health'), 'no suspect after a deregistered close')
})

t.test('the same id on a new session wins; the old session is closed', async (t) => {
  const { port } = await startTestSeed(t)
  const watch = await watcher(t, port, { events: true })
  const first = await nodeClient(t, port, 'twin', { port: 9001 })
  const second = await nodeClient(t, port, 'twin', { port: 9002 })
  await until(() => !first.connected, 2000, 'the old session to close')
  t.ok(second.connected)
  t.match(await nodesOf(watch.client), [{ id: 'twin', port: 9002, connected: true, health: 'ok' }])
  t.equal(watch.events.filter((e) => e.type === 'joined').length, 1, 'one node, joined once')
  t.notOk(watch.events.some((e) => e.node.health === 'suspect'), 'the replaced session does not make the node suspect')
  const err = await first.request('ping', {}).catch((e: EspraError) => e)
  t.match(err, { code: 'ESPRA_ERR_META_CLOSED' })
})

t.test('a reconnecting node re-registers and is healthy again', async (t) => {
  const first = await startTestSeed(t, { heartbeatTimeout: 2000 })
  const watch = await watcher(t, first.port, { events: true })
  const node = await nodeClient(t, first.port, 'n-re')
  const other = client(t, first.port, { peer: { kind: 'node', id: 'n-re' } })
  await other.ready
  await other.request('register', nodeInfo('n-re'))
  await until(() => !node.connected)
  await other.close()
  await until(() => watch.events.some((e) => e.node.health === 'suspect'))
  const again = await nodeClient(t, first.port, 'n-re')
  t.ok(again.connected)
  await until(() => watch.events.some((e) => e.type === 'health' && e.reason === 'reconnected' && e.node.health === 'ok'), 2000, 'healthy again')
})

t.test('grace: nobody is evicted while the seed is young', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 150, seedGrace: 700 })
  const watch = await watcher(t, port, { events: true })
  const node = await nodeClient(t, port, 'n-grace')
  node.stopHeartbeat()
  await node.close()
  await sleep(400)
  t.notOk(watch.events.some((e) => e.type === 'left'), 'still registered well past the timeout, during grace')
  t.match(await nodesOf(watch.client), [{ id: 'n-grace', health: 'suspect' }])
  const left = await until(() => watch.events.find((e) => e.type === 'left'), 2000, 'eviction after grace')
  t.equal(left.reason, 'timeout')
})

t.test('the sweep scales: 3,000 records, one list, no timer per node', async (t) => {
  const registry = new Registry({ heartbeatTimeoutMs: 200, graceMs: 0, sweepMs: 20 })
  t.teardown(() => registry.close())
  const closed: string[] = []
  const links = new Map<string, RegistryLink>()
  for (let i = 0; i < 3000; i++) {
    const id = `n${i}`
    const link: RegistryLink = { close: (reason) => void closed.push(`${id}:${reason}`) }
    links.set(id, link)
    registry.register(nodeInfo(id, { role: i % 20 === 0 ? 'live' : 'app' }), link)
  }
  const left: string[] = []
  registry.onEvent((e) => e.type === 'left' && left.push(e.node.id))
  const body = heartbeat()
  // Speed is bench/seed-scale's business; here only the bookkeeping is checked.
  for (let round = 0; round < 10; round++) for (const [id, link] of links) if (id !== 'n7') registry.heartbeat(id, link, body)
  t.notOk(registry.heartbeat('n8', { close() {} }, body), 'a heartbeat over another link is refused')
  const beat = setInterval(() => {
    for (const [id, link] of links) if (id !== 'n7') registry.heartbeat(id, link, body)
  }, 50)
  t.teardown(() => clearInterval(beat))
  await until(() => left.length > 0, 2000)
  await sleep(100)
  t.same(left, ['n7'], 'only the silent node left')
  t.same(closed, ['n7:timeout'])
  t.equal(registry.size, 2999)
})

t.test('only a seed that may evict sweeps; reset forgets every node silently and starts a new grace', async (t) => {
  let leading = false
  const events: string[] = []
  const registry = new Registry({ heartbeatTimeoutMs: 50, graceMs: 0, sweepMs: 10, mayEvict: () => leading })
  t.teardown(() => registry.close())
  registry.onEvent((e) => events.push(`${e.type} ${e.node.id}`))
  const closed: string[] = []
  const link = (id: string): RegistryLink => ({ close: (reason) => void closed.push(`${id} ${reason}`) })
  registry.register(nodeInfo('a'), link('a'))
  await sleep(150)
  t.equal(registry.size, 1, 'silent past the timeout, but this seed does not lead: not evicted')
  t.same(closed, [])
  leading = true
  await until(() => registry.size === 0, 2000, 'evicted once it leads')
  t.same(closed, ['a timeout'])

  registry.register(nodeInfo('b'), link('b'))
  events.length = 0
  registry.reset(10_000)
  t.equal(registry.size, 0, 'forgotten')
  t.same(events, [], 'without events (they are the new leader\'s to tell)')
  t.ok(registry.inGrace, 'a new grace started')
  registry.register(nodeInfo('c'), link('c'))
  await sleep(150)
  t.equal(registry.size, 1, 'nobody is evicted during the new grace')
  registry.reset(0)
  t.notOk(registry.inGrace)
})
