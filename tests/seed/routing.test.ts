import t from 'tap'
import type { RoutingTable } from '../../lib/transport/meta-shapes.js'
import { sleep, until } from '../helpers/meta.js'
import { client, nodeClient, startTestSeed, watcher } from '../helpers/seed.js'

const ids = (table: RoutingTable | undefined) => table?.nodes.map((n) => n.id)

t.test('a region table is pushed on change only, and its version grows', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 300 })
  const proxy = await watcher(t, port, { routing: 'eu-1' })
  await until(() => proxy.tables.length === 1, 2000, 'the table at subscribe')
  t.match(proxy.tables[0], { region: 'eu-1', nodes: [] })

  const b = await nodeClient(t, port, 'live-b', { region: 'eu-1', port: 9002 })
  await until(() => proxy.tables.length === 2, 2000, 'a push for live-b')
  const a = await nodeClient(t, port, 'live-a', { region: 'eu-1', port: 9001 })
  await until(() => proxy.tables.length === 3, 2000, 'a push for live-a')
  t.same(proxy.tables[2]!.nodes, [
    { id: 'live-a', address: '127.0.0.1', port: 9001 },
    { id: 'live-b', address: '127.0.0.1', port: 9002 },
  ], 'healthy Live nodes, sorted by id')

  await nodeClient(t, port, 'live-other-region', { region: 'us-1' })
  await nodeClient(t, port, 'app-1', { region: 'eu-1', role: 'app' })
  await sleep(300) // heartbeats flow all this time
  t.equal(proxy.tables.length, 3, 'no push for other regions, other roles or plain heartbeats')

  b.setHealth('draining')
  await until(() => proxy.tables.length === 4, 2000, 'a push when live-b drains')
  t.same(ids(proxy.tables[3]), ['live-a'])
  await a.close()
  await until(() => proxy.tables.length === 5, 2000, 'a push when live-a disconnects')
  t.same(ids(proxy.tables[4]), [], 'a suspect node leaves routing at once')

  const versions = proxy.tables.map((table) => table.version)
  t.ok(versions.every((v, i) => i === 0 || v > versions[i - 1]!), `versions grow: ${versions.join(', ')}`)
  t.ok(versions[0]! >= Date.now() - 60_000, 'versions are time-based')
  const asked = await proxy.client.request<RoutingTable>('routing', { region: 'eu-1' })
  t.same(asked, proxy.tables[4], 'the routing request answers the same table')
  t.equal(proxy.tables.length, 5)
})

t.test('regression: a degraded Live node stays routed while a child serves, and leaves when none does', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 2000 })
  const proxy = await watcher(t, port, { routing: 'eu-1' })
  const live = await nodeClient(t, port, 'live-a', { region: 'eu-1', children: 2, childrenWanted: 2 }, { everyMs: 20 })
  await nodeClient(t, port, 'live-b', { region: 'eu-1' })
  await until(() => ids(proxy.tables.at(-1))?.length === 2, 2000, 'both nodes routed')
  const pushes = proxy.tables.length
  // One child crash-loops, the other serves: degraded, still routed.
  live.setHealth('degraded', 1)
  await sleep(200)
  t.equal(proxy.tables.length, pushes, 'no push: the node still serves')
  t.same(ids((await proxy.client.request<RoutingTable>('routing', { region: 'eu-1' }))), ['live-a', 'live-b'], 'the degraded node is in the table')
  // No child alive: out of routing.
  live.setHealth('degraded', 0)
  await until(() => proxy.tables.length === pushes + 1, 2000, 'a push when no child serves')
  t.same(ids(proxy.tables.at(-1)), ['live-b'])
  // A restarted child serves again: back in routing, though still degraded.
  live.setHealth('degraded', 1)
  await until(() => proxy.tables.length === pushes + 2, 2000, 'a push when a child serves again')
  t.same(ids(proxy.tables.at(-1)), ['live-a', 'live-b'])
  live.setHealth('draining', 1)
  await until(() => proxy.tables.length === pushes + 3, 2000, 'a push when it drains')
  t.same(ids(proxy.tables.at(-1)), ['live-b'], 'draining is never routed')
})

t.test('routing pushes are held during grace and pushed once at its end', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 2000, seedGrace: 600 })
  const proxy = await watcher(t, port, { routing: 'us-1' })
  const otherProxy = await watcher(t, port, { routing: 'us-1' })
  await nodeClient(t, port, 'live-1')
  await nodeClient(t, port, 'live-2')
  await sleep(300)
  t.equal(proxy.tables.length, 0, 'nothing pushed during grace (proxies keep their last table)')
  await until(() => proxy.tables.length === 1 && otherProxy.tables.length === 1, 2000, 'the push at grace end')
  t.same(ids(proxy.tables[0]), ['live-1', 'live-2'], 'the rebuilt table')
  await sleep(200)
  t.equal(proxy.tables.length, 1, 'pushed once')
  t.same(otherProxy.tables, proxy.tables, 'every subscriber gets the same table')
})

t.test('the version grows across seed restarts', async (t) => {
  const first = await startTestSeed(t)
  const admin = client(t, first.port)
  await admin.ready
  const before = await admin.request<RoutingTable>('routing', { region: 'us-1' })
  await admin.close()
  await first.seed.close()
  const second = await startTestSeed(t)
  const admin2 = client(t, second.port)
  await admin2.ready
  const after = await admin2.request<RoutingTable>('routing', { region: 'us-1' })
  t.ok(after.version > before.version, `${after.version} > ${before.version}`)
})

t.test('unsubscribed on close: a closed proxy gets nothing and costs nothing', async (t) => {
  const { port } = await startTestSeed(t)
  const proxy = await watcher(t, port, { routing: 'us-1' })
  await until(() => proxy.tables.length === 1)
  await proxy.client.close()
  const stay = await watcher(t, port, { routing: 'us-1' })
  await until(() => stay.tables.length === 1)
  await nodeClient(t, port, 'live-x')
  await until(() => stay.tables.length === 2)
  t.equal(proxy.tables.length, 1)
})

t.test('a table names the nodes that left it because the seed lost them (silent, or their connection closed), not those drained or stopped', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 300 })
  const proxy = await watcher(t, port, { routing: 'eu-1' })
  const nodes = await Promise.all(['live-a', 'live-b', 'live-c', 'live-d'].map((id, i) => nodeClient(t, port, id, { region: 'eu-1', port: 9001 + i })))
  const [a, b, c, d] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0], typeof nodes[0]]
  await until(() => ids(proxy.tables.at(-1))?.length === 4, 2000, 'all four routed')
  const next = async (what: string): Promise<RoutingTable> => {
    const n = proxy.tables.length
    await until(() => proxy.tables.length > n, 3000, what)
    return proxy.tables.at(-1)!
  }

  a.setHealth('draining')
  let table = await next('live-a drains')
  t.same(ids(table), ['live-b', 'live-c', 'live-d'])
  t.equal(table.lost, undefined, 'a draining node is not lost: it may hand its channels over')
  b.stopHeartbeat()
  const deregistered = next('live-b deregisters')
  await b.request('deregister', {})
  table = await deregistered
  t.same(ids(table), ['live-c', 'live-d'])
  t.equal(table.lost, undefined, 'a node that said it leaves is not lost')
  c.stopHeartbeat()
  table = await next('live-c is evicted')
  t.same({ nodes: ids(table), lost: table.lost }, { nodes: ['live-d'], lost: ['live-c'] }, 'silent past the heartbeat timeout: lost')
  await c.close()
  d.stopHeartbeat()
  const disconnected = next('live-d disconnects')
  await d.close()
  table = await disconnected
  t.same({ nodes: ids(table), lost: table.lost }, { nodes: [], lost: ['live-d'] }, 'its connection closed: lost at once')
  proxy.tables.forEach((x, i) => {
    if (x.lost !== undefined) t.ok(x.lost.every((id) => ids(proxy.tables[i - 1])!.includes(id) && !ids(x)!.includes(id)), `table ${i} names only nodes that just left it`)
  })
})

t.test('--live-homes children: a table lists each node\'s Live peers as register and heartbeats report them; a change is pushed at once', async (t) => {
  const { port } = await startTestSeed(t, { heartbeatTimeout: 2000 })
  const proxy = await watcher(t, port, { routing: 'eu-1' })
  const peers0 = [{ id: 'live-a/0.100', linkPort: 11001 }]
  const a = await nodeClient(t, port, 'live-a', { region: 'eu-1', port: 9001, livePeers: peers0 })
  await nodeClient(t, port, 'live-b', { region: 'eu-1', port: 9002 })
  await until(() => ids(proxy.tables.at(-1))?.length === 2, 2000, 'both nodes routed')
  t.same(proxy.tables.at(-1)!.nodes, [
    { id: 'live-a', address: '127.0.0.1', port: 9001, peers: peers0 },
    { id: 'live-b', address: '127.0.0.1', port: 9002 },
  ], 'a node with peers lists them; one without homes channels itself')
  const pushes = proxy.tables.length
  await sleep(200)
  t.equal(proxy.tables.length, pushes, 'heartbeats with the same peers push nothing')
  // A child crashed and was replaced: a new pid, a new peer.
  const peers1 = [{ id: 'live-a/0.101', linkPort: 11001 }, { id: 'live-a/1.102', linkPort: 11002 }]
  a.setLivePeers(peers1)
  await until(() => proxy.tables.length === pushes + 1, 2000, 'a push for the new peers')
  t.same(proxy.tables.at(-1)!.nodes[0]!.peers, peers1)
  a.setLivePeers([])
  await until(() => proxy.tables.length === pushes + 2, 2000, 'a push when no child homes channels')
  t.same(proxy.tables.at(-1)!.nodes[0], { id: 'live-a', address: '127.0.0.1', port: 9001, peers: [] }, 'listed with no peer: its parent homes nothing')
  t.notOk((proxy.tables.at(-1)!.lost ?? []).includes('live-a'), 'a node whose peers change is not lost')
  t.equal(proxy.tables.filter((x) => x.lost !== undefined).length, 0, 'peers that left without being reported lost are named lost by no table')

  // Two peers; one dies (reported lost), then the other leaves (not reported): only the first is named lost.
  a.setLivePeers(peers1)
  await until(() => proxy.tables.length === pushes + 3, 2000, 'a push for two peers')
  a.setLivePeers([peers1[1]!], ['live-a/0.100', 'live-a/0.101'])
  await until(() => proxy.tables.length === pushes + 4, 2000, 'a push without the dead peer')
  t.same(proxy.tables.at(-1)!.lost, ['live-a/0.101'], 'the dead peer is named lost; a lost peer the table no longer held is not')
  a.setLivePeers([], ['live-a/0.100', 'live-a/0.101'])
  await until(() => proxy.tables.length === pushes + 5, 2000, 'a push without the peer that left')
  t.notOk('lost' in proxy.tables.at(-1)!, 'a peer that left (drained, stopped) is not named lost')
})
