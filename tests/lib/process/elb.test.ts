// A node with --elb-target-group: it registers once healthy, and on SIGTERM leaves the target group
// (deregister, serve while draining) before its children drain. The real SDK talks to a local ELBv2 Query API server.
import t, { type Test } from 'tap'
import { health, startNode, waitFor } from '../../helpers/cluster.js'
import { startFakeElb } from '../../helpers/elbv2.js'

const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/live/50dc6c495c0c9188'

async function setup(t: Test, groups: Record<string, { deregistrationDelaySeconds?: number }>) {
  const elb = await startFakeElb({ groups, initialPolls: 1, drainPolls: 2 })
  t.teardown(() => elb.close())
  // The node reads region, credentials and the endpoint from the standard AWS chain, as on EC2.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.endpoint, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_EC2_METADATA_DISABLED: 'true',
  })
  return elb
}

t.test('registers once healthy; on SIGTERM deregisters and serves while the target drains, then drains and exits 0', async (t) => {
  const elb = await setup(t, { [ARN]: { deregistrationDelaySeconds: 30 } })
  const node = await startNode(t, 'admin', { children: 1, 'elb-target-group': ARN })
  await node.waitForLog((l) => l.msg === 'ELB target healthy', 'the target group calls it healthy')
  t.same(elb.actions(), ['RegisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.match(elb.calls[0]!.params, { TargetGroupArn: ARN, 'Targets.member.1.Id': '127.0.0.1', 'Targets.member.1.Port': String(node.port) })
  elb.calls.length = 0

  node.proc.kill('SIGTERM')
  await node.waitForLog((l) => l.msg === 'ELB target draining', 'the target drains')
  const during = await health(node.port)
  t.equal(during.status, 503, 'health fails while the load balancer drains the target')
  t.equal(during.body['health'], 'draining')
  t.same(await node.exited, { code: 0, signal: null })
  t.same(elb.actions(), ['DescribeTargetGroupAttributes', 'DeregisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.equal(elb.state(ARN, '127.0.0.1', node.port), 'unused')

  const order = (msg: string | RegExp): number => node.logs.findIndex((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)))
  t.ok(order('node health: draining') < order(/^leaving the ELB target group/), 'health fails first')
  t.ok(order('left the ELB target group') < order(/^child \d+ exited$/), 'the target left the group before the children drained')
})

t.test('an unknown target group is one error line; the node serves, and stops cleanly', async (t) => {
  await setup(t, {})
  const node = await startNode(t, 'admin', { children: 1, 'elb-target-group': ARN })
  const line = await node.waitForLog((l) => l.level === 'error' && /ELB/.test(l.msg), 'the ELB error')
  t.equal(line.msg, `cannot register in the ELB target group: ELB RegisterTargets: no target group ${ARN} (check the ARN and the region)`)
  t.equal(line['code'], 'ESPRA_ERR_ELB_TARGET_GROUP')
  await waitFor('still serving', async () => (await health(node.port)).status === 200)
  t.same(await node.stop(), { code: 0, signal: null })
})

t.test('a malformed --elb-target-group exits 2 naming the option', async (t) => {
  const node = await startNode(t, 'admin', { 'elb-target-group': 'my-group' }, { noWait: true })
  t.same(await node.exited, { code: 2, signal: null })
  t.match(node.stderr(), /--elb-target-group: must be a target group ARN/)
})
