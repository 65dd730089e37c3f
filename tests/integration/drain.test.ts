// `admin drain` / `admin undrain` against real processes: the ELB call order of a drain and an undrain (real SDK,
// local ELBv2 Query API server), a drained node that is restarted comes back drained and out of routing, the order
// survives a seed restart, undrain puts the node back, and the CLI refuses bad input with one precise line.
import t, { type Test } from 'tap'
import type { NodeView, RoutingTable } from '../../lib/transport/meta-shapes.js'
import { freePort, health, SECRET, startNode, waitFor, type StartedNode } from '../helpers/cluster.js'
import { startFakeElb } from '../helpers/elbv2.js'
import { client } from '../helpers/seed.js'
import { runCli } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/live/50dc6c495c0c9188'
const FAST = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }

async function startSeed(t: Test, flags: Record<string, string | number> = {}) {
  const metaPort = await freePort()
  // One data directory for every start of this seed: the drain orders live there.
  const seedFlags = { 'data-dir': testDir('espra-drain-seed-'), 'meta-port': metaPort, port: await freePort(), 'metrics-port': await freePort(), 'seed-grace': '0', ...FAST, ...flags }
  const seed = await startNode(t, 'seed', seedFlags)
  return { seed, seedFlags, metaPort, address: `127.0.0.1:${metaPort}` }
}

const cli = (seed: string, ...args: string[]) => runCli(['admin', ...args, '--seed', seed], { env: { ...process.env, ESPRA_SECRET: SECRET } })

async function registry(t: Test, metaPort: number) {
  const admin = client(t, metaPort)
  await admin.ready
  return {
    nodes: () => admin.request<NodeView[]>('nodes', {}),
    node: async (id: string) => (await admin.request<NodeView[]>('nodes', {})).find((n) => n.id === id),
    routed: async (region = 'us-1') => (await admin.request<RoutingTable>('routing', { region })).nodes.map((n) => n.id),
  }
}

t.test('the CLI refuses bad input with one line and exit 2 (bad durations, unknown --then), unknown nodes with exit 1', async (t) => {
  const { address } = await startSeed(t)
  const cases: [string[], RegExp][] = [
    [['drain', 'live-a', '--then', 'reboot'], /^espra-node: --then: must be one of stop, idle \(got 'reboot'\)\n$/],
    [['drain', 'live-a', '--grace', 'soon'], /^espra-node: --grace: must be a duration such as 500ms, 10s, 2m or 1h\n$/],
    [['drain', 'live-a', '--grace', '2h'], /^espra-node: --grace: must be at most 1h \(got 2h\)\n$/],
    [['drain', 'live-a', '--timeout', '0'], /^espra-node: --timeout: must be a duration above 0/],
    [['drain', '../x'], /^espra-node: <node>: '\.\.\/x' is not a node id/],
    [['undrain', 'a b'], /^espra-node: <node>: 'a b' is not a node id/],
  ]
  for (const [args, stderr] of cases) {
    const run = await cli(address, ...args)
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, stderr)
  }
  const unknown = await cli(address, 'drain', 'nobody')
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /^espra-node: ESPRA_ERR_NODE_UNKNOWN: no registered node is called 'nobody'/)
  const notDrained = await cli(address, 'undrain', 'nobody')
  t.equal(notDrained.code, 0)
  t.equal(notDrained.stdout, 'nobody: not drained; nothing to do\n')
})

t.test('with an ELB target group: drain deregisters and waits, serves the grace, idles; undrain registers again', async (t) => {
  const elb = await startFakeElb({ groups: { [ARN]: { deregistrationDelaySeconds: 30 } }, initialPolls: 1, drainPolls: 2 })
  t.teardown(() => elb.close())
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.endpoint, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_EC2_METADATA_DISABLED: 'true',
  })
  const { address, metaPort } = await startSeed(t)
  const reg = await registry(t, metaPort)
  const node = await startNode(t, 'app', { seed: address, 'node-id': 'app-a', children: 1, 'elb-target-group': ARN, ...FAST })
  await node.waitForLog((l) => l.msg === 'ELB target healthy', 'the target group calls it healthy')
  t.same(elb.actions(), ['RegisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  elb.calls.length = 0

  const drained = await cli(address, 'drain', 'app-a', '--then', 'idle', '--grace', '1s')
  t.equal(drained.code, 0, drained.stderr)
  t.match(drained.stdout, /^app-a: drain ordered \(then idle, grace 1s\); out of routing now\n/)
  t.match(drained.stdout, /app-a: health draining\n/)
  t.match(drained.stdout, /app-a: draining; idle after the grace until admin undrain\n$/)
  t.equal((await health(node.port)).status, 503, 'health answers 503 at once')
  await node.waitForLog((l) => l.msg === 'drain: grace over, idle until admin undrain', 'idle after the grace')
  t.same(elb.actions(), ['DescribeTargetGroupAttributes', 'DeregisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.equal(elb.state(ARN, '127.0.0.1', node.port), 'unused')
  const order = (msg: string | RegExp): number => node.logs.findIndex((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)))
  t.ok(order('left the ELB target group') < order('drain: serving through the grace'), 'the grace starts once the target left the group')
  t.equal((await reg.node('app-a'))?.health, 'draining', 'idle: still registered, as draining')
  t.match((await reg.node('app-a'))?.drain, { then: 'idle', graceMs: 1000 })
  t.equal(node.proc.exitCode, null, 'idle: the node keeps running')

  elb.calls.length = 0
  const undrained = await cli(address, 'undrain', 'app-a')
  t.equal(undrained.code, 0, undrained.stderr)
  t.match(undrained.stdout, /^app-a: undrained\n.*app-a: health ok\n$/s)
  t.equal((await health(node.port)).status, 200)
  await waitFor('registered again', () => elb.actions()[0] === 'RegisterTargets')
  await node.waitForLog((l) => l.msg === 'undrained: health ok again, back in routing', 'undrained')
  await node.waitForLog((l) => l.msg === 'ELB target healthy' && node.logs.indexOf(l) > order('undrained: health ok again, back in routing'), 'healthy in the group again')
  t.same(elb.actions().slice(0, 3), ['RegisterTargets', 'DescribeTargetHealth', 'DescribeTargetHealth'])
  t.equal((await reg.node('app-a'))?.drain, null)
  t.same(await node.stop(), { code: 0, signal: null })
})

t.test('drain --then stop: the node stops (exit 0); restarted it comes back drained and unrouted, across a seed restart too; undrain restores it', async (t) => {
  let { seed, seedFlags, address, metaPort } = await startSeed(t, { 'seed-grace': '1s' })
  const liveFlags = { seed: address, 'node-id': 'live-a', children: 1, port: await freePort(), 'metrics-port': await freePort(), ...FAST }
  let live: StartedNode = await startNode(t, 'live', liveFlags)
  await startNode(t, 'live', { seed: address, 'node-id': 'live-b', children: 1, ...FAST })
  let reg = await registry(t, metaPort)
  await waitFor('both Live nodes routed', async () => (await reg.routed()).length === 2)

  const drained = await cli(address, 'drain', 'live-a', '--grace', '300ms')
  t.equal(drained.code, 0, drained.stderr)
  t.match(drained.stdout, /^live-a: drain ordered \(then stop, grace 0\.3s\); out of routing now\n/)
  t.match(drained.stdout, /live-a: not registered\nlive-a: stopped \(admin undrain, then start it again, brings it back\)\n$/)
  t.same(await live.exited, { code: 0, signal: null }, 'the node ran its stop sequence and exited 0')
  t.same(await reg.routed(), ['live-b'])
  const away = await cli(address, 'status')
  t.match(away.stdout, /\ndrained, not registered \(admin undrain, then start them\): live-a \(then stop, since [\dT:.Z-]+\)\n/, 'admin status lists the stopped drained node')

  // Started again (as a process manager or an operator would): drained, out of routing, not stopping again.
  live = await startNode(t, 'live', liveFlags)
  await live.waitForLog((l) => /started after the stop order/.test(l.msg), 'stays drained and idle')
  t.equal((await health(live.port)).status, 503)
  t.equal((await reg.node('live-a'))?.health, 'draining')
  t.same(await reg.routed(), ['live-b'], 'never routed after the restart')
  const shown = await cli(address, 'status')
  t.match(shown.stdout, /\ndrained: live-a \(then stop, since \d{4}-\d\d-\d\dT[\d:.]+Z\)\n/, 'admin status lists the drained node')
  t.match(shown.stdout, /\nlive-a +live +.* draining \(drained, then stop\) /, 'and its row says so')

  // The seed restarts: the order is in its datastore, so live-a is still drained.
  seed.proc.kill('SIGKILL')
  await seed.exited
  seed = await startNode(t, 'seed', seedFlags)
  reg = await registry(t, metaPort)
  await waitFor('both Live nodes registered again', async () => (await reg.nodes()).filter((n) => n.role === 'live').length === 2, 10_000)
  t.same(await reg.routed(), ['live-b'], 'still out of routing')
  t.match((await reg.node('live-a'))?.drain, { then: 'stop', graceMs: 300 })
  t.equal((await health(live.port)).status, 503)
  t.equal(live.proc.exitCode, null, 'a stop order older than the process does not stop it again')

  const undrained = await cli(address, 'undrain', 'live-a')
  t.equal(undrained.code, 0, undrained.stderr)
  t.equal((await health(live.port)).status, 200)
  await waitFor('live-a routed again', async () => (await reg.routed()).length === 2)
  const status = await cli(address, 'status')
  t.notMatch(status.stdout, /drained/, 'status shows no drained node')
  void seed
})
