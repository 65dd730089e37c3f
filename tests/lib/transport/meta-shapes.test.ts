// The optional `elb` field of `register` and `heartbeat` bodies (a node's place in its ELB target group):
// kept when well-formed, refused naming the field (register) or reported (heartbeat) when not. The optional
// per-child figures of a heartbeat (`load.byChild`) and the Live peers of a node (`livePeers`): checked the same way.
import t from 'tap'
import { heartbeatProblem, parseNodeInfo } from '../../../lib/transport/meta-shapes.js'
import { heartbeat, nodeInfo } from '../../helpers/meta.js'

const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/50dc6c495c0c9188'

const bad: unknown[] = [
  null, 'healthy', [], {}, { state: 'healthy' }, { targetGroup: ARN }, { state: 'HEALTHY', targetGroup: ARN },
  { state: 'a'.repeat(33), targetGroup: ARN }, { state: 'healthy', targetGroup: '' }, { state: 'healthy', targetGroup: 'x'.repeat(513) },
  { state: 'healthy', targetGroup: 'has space' }, { state: 7, targetGroup: ARN },
]

t.test('register: elb kept when well-formed, absent when not sent, refused naming elb otherwise', async (t) => {
  t.same(parseNodeInfo({ ...nodeInfo('app-a'), elb: { state: 'unhealthy.draining', targetGroup: ARN, extra: 1 } }).elb, { state: 'unhealthy.draining', targetGroup: ARN }, 'unknown keys dropped')
  t.same(parseNodeInfo({ ...nodeInfo('app-a'), elb: { state: 'not-registered', targetGroup: ARN } }).elb, { state: 'not-registered', targetGroup: ARN })
  t.notOk('elb' in parseNodeInfo(nodeInfo('app-a')), 'no target group, no field')
  for (const elb of bad) {
    t.throws(() => parseNodeInfo({ ...nodeInfo('app-a'), elb }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'elb' } }, JSON.stringify(elb))
  }
})

t.test('heartbeat: elb optional; a malformed one is the reason the body is refused', async (t) => {
  t.equal(heartbeatProblem(heartbeat()), null)
  t.equal(heartbeatProblem({ ...heartbeat(), elb: { state: 'healthy', targetGroup: ARN } }), null)
  for (const elb of bad) t.equal(heartbeatProblem({ ...heartbeat(), elb }), 'heartbeat elb must be {state, targetGroup}', JSON.stringify(elb))
})

t.test('heartbeat: load.byChild optional; each entry a slot, a pid and four figures, at most 1024', async (t) => {
  const child = (over: Record<string, unknown> = {}) => ({ slot: 0, pid: 4242, connections: 3, rps: 1.5, rssBytes: 50e6, lagMs: 0.7, ...over })
  const withChildren = (byChild: unknown) => ({ ...heartbeat(), load: { ...heartbeat().load, byChild } })
  t.equal(heartbeatProblem(withChildren([child(), child({ slot: 1, pid: 4243 })])), null)
  t.equal(heartbeatProblem(withChildren([])), null, 'none running')
  const malformed: unknown[] = ['x', {}, [null], [child({ slot: -1 })], [child({ slot: 1024 })], [child({ slot: 1.5 })], [child({ pid: 'x' })], [child({ pid: undefined })]]
  for (const list of malformed) t.equal(heartbeatProblem(withChildren(list)), Array.isArray(list) ? 'heartbeat load.byChild entries need a slot (0 to 1023) and a pid' : 'heartbeat load.byChild must be an array of at most 1024 children', JSON.stringify(list))
  for (const field of ['connections', 'rps', 'rssBytes', 'lagMs']) {
    t.equal(heartbeatProblem(withChildren([child({ [field]: -1 })])), 'heartbeat load.byChild figures must be non-negative numbers', field)
  }
  t.equal(heartbeatProblem(withChildren(Array.from({ length: 1025 }, (_, i) => child({ slot: i % 1024 })))), 'heartbeat load.byChild must be an array of at most 1024 children')
})

t.test('livePeers (register and heartbeat): each {id: "<node>/<index>.<pid>", linkPort}, distinct, at most 256; refused naming the field', async (t) => {
  const peers = [{ id: 'live-a/0.4242', linkPort: 10080 }, { id: 'live-a/1.4243', linkPort: 10081 }]
  t.same(parseNodeInfo({ ...nodeInfo('live-a', { role: 'live' }), livePeers: peers.map((p) => ({ ...p, extra: 1 })) }).livePeers, peers, 'unknown keys dropped')
  t.notOk('livePeers' in parseNodeInfo(nodeInfo('live-a')), 'none sent, no field')
  t.same(parseNodeInfo({ ...nodeInfo('live-a'), livePeers: [] }).livePeers, [], 'none up yet')
  t.equal(heartbeatProblem({ ...heartbeat(), livePeers: peers }), null)
  const malformed: unknown[] = [
    'x', {}, [null], [{ id: 'live-a/0.1' }], [{ id: 'live-a/0.1', linkPort: 0 }], [{ id: 'live-a/0.1', linkPort: 70000 }],
    [{ id: 'live-a', linkPort: 1 }], [{ id: 'live-a/x.1', linkPort: 1 }], [{ id: '../0.1', linkPort: 1 }], [{ id: `${'a'.repeat(65)}/0.1`, linkPort: 1 }],
    [{ id: 'live-a/0.1', linkPort: 1 }, { id: 'live-a/0.1', linkPort: 2 }],
    Array.from({ length: 257 }, (_, i) => ({ id: `live-a/${i}.${i}`, linkPort: 1000 + i })),
  ]
  t.throws(() => parseNodeInfo({ ...nodeInfo('live-a'), livePeers: [{ id: 'live-b/0.1', linkPort: 1 }] }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'livePeers', reason: 'must be peers of this node (ids starting "live-a/")' } }, 'another node\'s peer')
  t.equal(heartbeatProblem({ ...heartbeat(), livePeers: [{ id: 'live-b/0.1', linkPort: 1 }] }, 'live-a'), 'heartbeat livePeers must be peers of this node (ids starting "live-a/")')
  for (const livePeers of malformed) {
    t.throws(() => parseNodeInfo({ ...nodeInfo('live-a'), livePeers }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'livePeers' } }, JSON.stringify(livePeers).slice(0, 80))
    t.match(heartbeatProblem({ ...heartbeat(), livePeers }), /^heartbeat livePeers must be /, JSON.stringify(livePeers).slice(0, 80))
  }
})

t.test('livePeersLost (register and heartbeat): at most 16 ids of the node\'s own peers; refused naming the field', async (t) => {
  const lost = ['live-a/0.4240', 'live-a/1.4241']
  t.same(parseNodeInfo({ ...nodeInfo('live-a', { role: 'live' }), livePeers: [], livePeersLost: lost }).livePeersLost, lost)
  t.notOk('livePeersLost' in parseNodeInfo({ ...nodeInfo('live-a'), livePeers: [] }), 'none sent, no field')
  t.equal(heartbeatProblem({ ...heartbeat(), livePeers: [], livePeersLost: lost }, 'live-a'), null)
  t.throws(() => parseNodeInfo({ ...nodeInfo('live-a'), livePeersLost: ['live-b/0.1'] }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'livePeersLost', reason: 'must be ids of this node\'s peers (starting "live-a/")' } }, 'another node\'s peer')
  t.equal(heartbeatProblem({ ...heartbeat(), livePeersLost: ['live-b/0.1'] }, 'live-a'), 'heartbeat livePeersLost must be ids of this node\'s peers (starting "live-a/")')
  for (const livePeersLost of ['x', {}, [null], [1], ['live-a'], ['live-a/x.1'], [`${'a'.repeat(65)}/0.1`], Array.from({ length: 17 }, (_, i) => `live-a/${i}.${i}`)]) {
    t.throws(() => parseNodeInfo({ ...nodeInfo('live-a'), livePeersLost }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'livePeersLost' } }, JSON.stringify(livePeersLost).slice(0, 80))
    t.match(heartbeatProblem({ ...heartbeat(), livePeersLost }), /^heartbeat livePeersLost must be /, JSON.stringify(livePeersLost).slice(0, 80))
  }
})
