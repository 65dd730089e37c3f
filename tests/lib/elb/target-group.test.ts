// The ELB target-group member with the real SDK against a local server that speaks the ELBv2 Query API.
import t, { type Test } from 'tap'
import { createTargetGroupMember, type TargetGroupOptions, type TargetHealth } from '../../../lib/elb/target-group.js'
import { startFakeElb } from '../../helpers/elbv2.js'

const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/live/50dc6c495c0c9188'
const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }

// Keep the default credential chain away from this machine's files and the (unreachable) instance metadata.
process.env['AWS_EC2_METADATA_DISABLED'] = 'true'
process.env['AWS_SHARED_CREDENTIALS_FILE'] = '/nonexistent/credentials'
process.env['AWS_CONFIG_FILE'] = '/nonexistent/config'
delete process.env['AWS_ACCESS_KEY_ID']
delete process.env['AWS_SECRET_ACCESS_KEY']
delete process.env['AWS_PROFILE']

async function setup(t: Test, group: { deregistrationDelaySeconds?: number } = {}, extra: Partial<TargetGroupOptions> = {}) {
  const elb = await startFakeElb({ groups: { [ARN]: group }, initialPolls: 1, drainPolls: 2 })
  const member = createTargetGroupMember({
    arn: ARN, targetId: '10.0.1.7', port: 8080, region: 'us-east-1', endpoint: elb.endpoint, credentials: CREDENTIALS, ...extra,
  })
  t.teardown(async () => {
    member.close()
    await elb.close()
  })
  return { elb, member }
}

t.test('register, then untilHealthy polls until the target is healthy', async (t) => {
  const { elb, member } = await setup(t)
  const seen: TargetHealth[] = []
  await member.register()
  const result = await member.untilHealthy(10_000, { pollMs: 10, onState: (h) => seen.push(h) })
  t.same(elb.actions(), ['RegisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.match(elb.calls[0]!.params, { TargetGroupArn: ARN, 'Targets.member.1.Id': '10.0.1.7', 'Targets.member.1.Port': '8080' })
  t.match(elb.calls[1]!.params, { TargetGroupArn: ARN, 'Targets.member.1.Id': '10.0.1.7', 'Targets.member.1.Port': '8080' })
  t.same(seen, [{ state: 'initial', reason: 'Elb.InitialHealthChecking' }, { state: 'healthy' }])
  t.match(result, { state: 'healthy', timedOut: false })
})

t.test('leave reads the deregistration delay, deregisters, and waits while the target drains until it is unused', async (t) => {
  const { elb, member } = await setup(t, { deregistrationDelaySeconds: 30 })
  await member.register()
  await member.untilHealthy(10_000, { pollMs: 10 })
  elb.calls.length = 0
  const seen: string[] = []
  const result = await member.leave({ pollMs: 10, onState: (h) => seen.push(h.state) })
  t.same(elb.actions(), ['DescribeTargetGroupAttributes', 'DeregisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.same(seen, ['draining', 'draining', 'unused'], 'draining is still in flight; unused ends the wait')
  t.match(result, { state: 'unused', timedOut: false })
  t.equal(await member.deregistrationDelayMs(), 30_000)
})

t.test('leave gives up at the deregistration delay plus the margin while the target is still draining', async (t) => {
  const elb = await startFakeElb({ groups: { [ARN]: { deregistrationDelaySeconds: 0 } }, drainPolls: 1_000_000 })
  const member = createTargetGroupMember({
    arn: ARN, targetId: 'i-0abc', port: 8081, region: 'us-east-1', endpoint: elb.endpoint, credentials: CREDENTIALS, leaveMarginMs: 300,
  })
  t.teardown(async () => {
    member.close()
    await elb.close()
  })
  await member.register()
  await member.untilHealthy(10_000, { pollMs: 10 })
  const result = await member.leave({ pollMs: 50 })
  t.match(result, { state: 'draining', timedOut: true })
  t.ok(elb.actions().filter((a) => a === 'DescribeTargetHealth').length > 2, 'it kept asking until the bound')
})

t.test('a target the group no longer lists counts as gone', async (t) => {
  const { member } = await setup(t)
  t.same(await member.health(), { state: 'unused', reason: 'Target.NotRegistered' })
})

t.test('throttling is retried by the SDK and the call succeeds', async (t) => {
  const { elb, member } = await setup(t)
  elb.throttle(2)
  await member.register()
  t.same(elb.actions(), ['RegisterTargets', 'RegisterTargets', 'RegisterTargets'])
  t.equal(elb.state(ARN, '10.0.1.7', 8080), 'initial')
})

t.test('throttling past every retry is ESPRA_ERR_ELB_UNAVAILABLE with one clear line', async (t) => {
  const { elb, member } = await setup(t, {}, { maxAttempts: 2 })
  elb.throttle(10)
  await t.rejects(member.deregister(), { code: 'ESPRA_ERR_ELB_UNAVAILABLE', message: /^ELB DeregisterTargets did not go through after every retry: Throttling \(Rate exceeded\)$/ })
  t.equal(elb.calls.length, 2)
})

t.test('an unknown target group is ESPRA_ERR_ELB_TARGET_GROUP, and leave does not deregister', async (t) => {
  const elb = await startFakeElb({ groups: {} })
  const member = createTargetGroupMember({ arn: ARN, targetId: '10.0.1.7', port: 8080, region: 'us-east-1', endpoint: elb.endpoint, credentials: CREDENTIALS })
  t.teardown(async () => {
    member.close()
    await elb.close()
  })
  await t.rejects(member.leave({ pollMs: 10 }), { code: 'ESPRA_ERR_ELB_TARGET_GROUP', message: `ELB DescribeTargetGroupAttributes: no target group ${ARN} (check the ARN and the region)` })
  t.same(elb.actions(), ['DescribeTargetGroupAttributes'])
})

t.test('no credentials in the AWS chain is ESPRA_ERR_ELB_CREDENTIALS before any request', async (t) => {
  const elb = await startFakeElb({ groups: { [ARN]: {} } })
  const member = createTargetGroupMember({ arn: ARN, targetId: '10.0.1.7', port: 8080, region: 'us-east-1', endpoint: elb.endpoint })
  t.teardown(async () => {
    member.close()
    await elb.close()
  })
  await t.rejects(member.register(), { code: 'ESPRA_ERR_ELB_CREDENTIALS', message: /^ELB RegisterTargets: no usable AWS credentials/ })
  t.equal(elb.calls.length, 0)
})
