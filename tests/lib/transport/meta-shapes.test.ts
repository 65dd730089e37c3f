// The optional `elb` field of `register` and `heartbeat` bodies (a node's place in its ELB target group):
// kept when well-formed, refused naming the field (register) or reported (heartbeat) when not. The optional
// per-child figures of a heartbeat (`load.byChild`): checked the same way.
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
