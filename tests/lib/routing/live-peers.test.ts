// The Live peers of a routing table (lib/routing/live-peers.ts): a node without `peers` is one peer, its parent, on its
// public port + the link offset; a node run with --live-homes children is its children. A channel's backup is on
// another node when there is one, else the next peer; the proxy's table picks the node of a key's home peer, and
// over nodes without peers it picks exactly what rendezvous over the nodes picks.
import t from 'tap'
import type { RoutingNode } from '../../../lib/core/node-state.js'
import { homeAndBackup, linkAddress, livePeersOf, NodesByHome } from '../../../lib/routing/live-peers.js'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'

const KEYS = Array.from({ length: 2000 }, (_, i) => `room:${i}`)
const plain: RoutingNode[] = [{ id: 'a', address: '10.0.0.1', port: 8080 }, { id: 'b', address: '::1', port: 8081 }, { id: 'c', address: '10.0.0.3', port: 8080 }]
const withChildren: RoutingNode[] = [
  { id: 'a', address: '10.0.0.1', port: 8080, peers: [{ id: 'a/0.11', linkPort: 10080 }, { id: 'a/1.12', linkPort: 10081 }] },
  { id: 'b', address: '::1', port: 8081 },
  { id: 'c', address: '10.0.0.3', port: 8080, peers: [] },
]

t.test('peers: a node is its children when it lists them, else its parent on port + offset', async (t) => {
  t.same(livePeersOf(withChildren, 2000), [
    { id: 'a/0.11', address: '10.0.0.1', linkPort: 10080, node: 'a' },
    { id: 'a/1.12', address: '10.0.0.1', linkPort: 10081, node: 'a' },
    { id: 'b', address: '::1', linkPort: 10081, node: 'b' },
  ], 'a node whose children are still starting (peers: []) homes nothing')
  t.equal(linkAddress({ address: '::1', linkPort: 10081 }), '[::1]:10081')
  t.equal(linkAddress({ address: '10.0.0.1', linkPort: 10080 }), '10.0.0.1:10080')
})

t.test('backup: the first peer on another node; with one node, its next child; none with one peer', async (t) => {
  const table = new Rendezvous(livePeersOf(withChildren, 2000))
  for (const ch of KEYS.slice(0, 200)) {
    const { home, backup } = homeAndBackup(table, ch)
    const ranked = table.rank(ch)
    t.equal(home, ranked[0]!.id)
    const homeNode = ranked[0]!.node
    t.equal(backup, ranked.find((p) => p.node !== homeNode)!.id, `${ch}: on another node`)
  }
  const oneNode = new Rendezvous(livePeersOf([withChildren[0]!], 2000))
  t.same(homeAndBackup(oneNode, 'room:1').backup, oneNode.rank('room:1')[1]!.id, 'one node: the sibling')
  t.same(homeAndBackup(new Rendezvous(livePeersOf([plain[0]!], 2000)), 'room:1'), { home: 'a', backup: null })
})

t.test('the proxy picks the node of the home peer; without peers, what rendezvous over the nodes picks', async (t) => {
  const byNode = new Rendezvous(plain)
  const same = new NodesByHome(plain)
  t.ok(KEYS.every((k) => same.pick(k) === byNode.pick(k)), 'nodes without peers: the same picks')
  const homes = new Rendezvous(livePeersOf(withChildren, 2000))
  const proxy = new NodesByHome(withChildren)
  t.ok(KEYS.every((k) => proxy.pick(k)!.id === homes.pick(k)!.node), 'the node of each key\'s home peer')
  t.notOk(KEYS.some((k) => proxy.pick(k)!.id === 'c'), 'a node with no peer up gets no key')
  t.equal(new NodesByHome([]).pick('x'), undefined)
})
