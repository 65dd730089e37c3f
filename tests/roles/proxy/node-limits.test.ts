// The node-wide counts a proxy parent keeps from its children's reports (roles/proxy/node-limits.ts), with a clock
// the test moves: connections summed over children and given back when one exits, one request bucket per address.
import t from 'tap'
import { createNodeLimits } from '../../../roles/proxy/node-limits.js'

t.test('connections: summed over children, blocked at the limit, given back on exit', async (t) => {
  const limits = createNodeLimits(3, 0)
  t.equal(limits.report(1, [['10.0.0.1', 2]], []), null, 'two of three: nothing to refuse')
  t.same(limits.report(2, [['10.0.0.1', 1], ['10.0.0.2', 1]], []), { conns: { add: ['10.0.0.1'], remove: [] }, rps: [] }, 'the third, on another child, blocks the address')
  t.same(limits.state().conns.add, ['10.0.0.1'])
  t.same(limits.report(1, [['10.0.0.1', -1]], []), { conns: { add: [], remove: ['10.0.0.1'] }, rps: [] }, 'one closes: let in again')
  t.equal(limits.report(1, [['10.0.0.1', -5]], []), null, 'a child gives back only what it held')
  t.same(limits.size(), { connections: 2, connectedAddresses: 2, blockedConnections: 0, blockedRps: 0 })
  limits.report(1, [['10.0.0.1', 2]], [])
  t.same(limits.childGone(1), { conns: { add: [], remove: ['10.0.0.1'] }, rps: [] }, 'a child that exits gives its connections back')
  t.same(limits.size(), { connections: 2, connectedAddresses: 2, blockedConnections: 0, blockedRps: 0 })
  t.equal(limits.childGone(1), null)
})

t.test('requests: one bucket per address for the node, refused until a token is back', async (t) => {
  let now = 1_000_000
  const limits = createNodeLimits(0, 4, () => now)
  t.equal(limits.report(1, [], [['10.0.0.1', 3]]), null, 'three of four')
  t.same(limits.report(2, [], [['10.0.0.1', 1]]), { conns: { add: [], remove: [] }, rps: [['10.0.0.1', now + 250]] }, 'the fourth, from another child, empties it: refused until one token is back')
  t.same(limits.report(1, [], [['10.0.0.1', 4]]), { conns: { add: [], remove: [] }, rps: [['10.0.0.1', now + 1250]] }, 'children that admitted more before they heard: refused longer')
  t.equal(limits.size().blockedRps, 1)
  now += 1250
  t.equal(limits.size().blockedRps, 0, 'the block ends')
  t.same(limits.report(1, [], [['10.0.0.1', 1]]), { conns: { add: [], remove: [] }, rps: [['10.0.0.1', now + 250]] }, 'one token was back; taken, the bucket is empty again')
  t.same(limits.state().rps, [['10.0.0.1', now + 250]])
  now += 20_000
  limits.sweep()
  t.same(limits.state(), { conns: { add: [], remove: [] }, rps: [] })
  t.equal(limits.report(1, [['10.0.0.9', 1]], []), null, 'no connection limit: nothing blocked')
  t.equal(limits.size().blockedConnections, 0)
})
