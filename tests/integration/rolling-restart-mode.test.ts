// `admin rolling-restart --mode restart` against real processes, each run by a small process manager with the
// shipped systemd unit's rules (restart on a failure or on exit 75, never on a clean exit 0):
// - two Live nodes behind a real proxy, under keep-alive HTTP load and Live publishes through the proxy: every
//   request answered 200, every publish acknowledged; each node stopped (exit 75), started again, back undrained
//   and routed;
// - two app nodes in an ELB target group (the real SDK against the local ELBv2 Query API server): the second node
//   is drained only once the first is `healthy` in the target group again.
import t from 'tap'
import type { NodeView, RoutingTable } from '../../lib/transport/meta-shapes.js'
import { RESTART_EXIT_CODE } from '../../lib/transport/drain-order.js'
import { freePort, health, SECRET, startNode, waitFor } from '../helpers/cluster.js'
import { managed } from '../helpers/managed-node.js'
import { startFakeElb } from '../helpers/elbv2.js'
import { LIVE_HOST, startHttpLoad, startLiveCheck } from '../helpers/reload-load.js'
import { client } from '../helpers/seed.js'
import { runCli } from '../helpers/up.js'

const FAST = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/50dc6c495c0c9188'

const cli = (seed: string, ...args: string[]) => runCli(['admin', ...args, '--seed', seed], { env: { ...process.env, ESPRA_SECRET: SECRET } })

t.test('restart mode of two Live nodes under load through the proxy: 0 failed requests and publishes, both back undrained', async (t) => {
  const metaPort = await freePort()
  const seed = `127.0.0.1:${metaPort}`
  await startNode(t, 'seed', { 'meta-port': metaPort, 'seed-grace': '0', ...FAST })
  const a = await managed(t, 'live', { seed, 'node-id': 'live-a', children: 1, ...FAST })
  const b = await managed(t, 'live', { seed, 'node-id': 'live-b', children: 1, ...FAST })
  const proxy = await startNode(t, 'proxy', { seed, children: 1, 'live-domain': 'localhost', ...FAST })
  await waitFor('the proxy routes to both Live nodes', async () => ((await health(proxy.port)).body['routing'] as RoutingTable | null)?.nodes.length === 2)
  const token = (await cli(seed, 'token', '--pub', 'load:*', '--sub', 'load:*')).stdout.trim()
  const auth = { authorization: `Bearer ${token}` }

  const http = startHttpLoad(proxy.port, '/history/load:read?limit=1', { connections: 10, headers: { host: LIVE_HOST, ...auth } })
  const live = await startLiveCheck(proxy.port, LIVE_HOST, token, 'load:restart-mode')
  await new Promise((r) => setTimeout(r, 500))
  http.mark()
  live.mark()
  const run = await cli(seed, 'rolling-restart', '--role', 'live', '--mode', 'restart', '--grace', '1s', '--min-healthy', '1', '--timeout', '60s')
  await new Promise((r) => setTimeout(r, 1000))
  const [h, l] = await Promise.all([http.stop(), live.stop()])
  t.comment(`restart mode of 2 Live nodes, 10 keep-alive clients through the proxy: ${h.sent} sent, ${h.failed} failed ${JSON.stringify(h.failures)}, p99 ${h.p99Ms} ms, max ${h.maxMs} ms`)
  t.comment(`live through the proxy: ${l.published} published, ${l.failedPublishes} failed ${JSON.stringify(l.failures)}, p99 ${l.p99Ms} ms; ${l.received} received, ${l.missing} missing, ${l.disorder} out of order, ${l.reconnects} reconnects, ${l.unrecovered} unrecovered (${l.detail})`)

  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^rolling restart \(restart mode, grace 1\.0s\) of 2 live node\(s\), 1 at a time, keeping at least 1 healthy$/m)
  t.match(run.stderr, /^\[1\/2\] live-a: restarted \(pid \d+ -> \d+\), undrained, healthy \([\d.]+s\)$/m)
  t.match(run.stderr, /^\[2\/2\] live-b: restarted \(pid \d+ -> \d+\), undrained, healthy \([\d.]+s\)$/m)
  t.match(run.stdout, /^rolling restart of 2 live node\(s\) done: 2 restarted, 0 failed, in [\d.]+s\n$/)
  t.ok(h.sent > 0, 'requests were sent')
  t.equal(h.failed, 0, `no failed requests (${JSON.stringify(h.failures)})`)
  t.ok(l.published > 0, 'publishes were sent')
  t.equal(l.failedPublishes, 0, `no failed publishes (${JSON.stringify(l.failures)})`)

  for (const m of [a, b]) {
    t.same(m.exits, [RESTART_EXIT_CODE], 'each node exited once, with the restart status')
    t.equal(m.starts.length, 2, 'and was started again')
    await m.starts[0]!.waitForLog((line) => line.msg === 'drain: grace over, stopping to be restarted by the process manager', 'the first process stopped for the restart')
  }
  const admin = client(t, metaPort)
  await admin.ready
  const nodes = await admin.request<NodeView[]>('nodes', { role: 'live' })
  t.same(nodes.map((n) => [n.id, n.health, n.drain, n.pid]).sort(), [['live-a', 'ok', null, a.current().proc.pid], ['live-b', 'ok', null, b.current().proc.pid]], 'both new processes registered, ok, undrained')
  t.same((await admin.request<RoutingTable>('routing', { region: 'us-1' })).nodes.map((n) => n.id), ['live-a', 'live-b'], 'both routed')
  t.same(await admin.request('node.drains', {}), { drains: [] }, 'no order left')
})

t.test('restart mode with an ELB target group: the next node is drained only once the last one is healthy in the group', async (t) => {
  // Each registered target stays `initial` for 4 health reads (2 s apart): the CLI must wait that out.
  const elb = await startFakeElb({ groups: { [ARN]: { deregistrationDelaySeconds: 30 } }, initialPolls: 4, drainPolls: 1 })
  t.teardown(() => elb.close())
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.endpoint, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_EC2_METADATA_DISABLED: 'true',
  })
  const metaPort = await freePort()
  const seed = `127.0.0.1:${metaPort}`
  await startNode(t, 'seed', { 'meta-port': metaPort, 'seed-grace': '0', ...FAST })
  const a = await managed(t, 'app', { seed, 'node-id': 'app-a', children: 1, 'elb-target-group': ARN, ...FAST })
  const b = await managed(t, 'app', { seed, 'node-id': 'app-b', children: 1, 'elb-target-group': ARN, ...FAST })
  const admin = client(t, metaPort)
  await admin.ready
  await waitFor('both healthy in the target group, as the seed shows', async () => {
    const nodes = await admin.request<NodeView[]>('nodes', { role: 'app' })
    return nodes.length === 2 && nodes.every((n) => n.elb?.state === 'healthy' && n.elb.targetGroup === ARN)
  }, 60_000)
  const portA = String(a.current().port)
  const portB = String(b.current().port)
  elb.calls.length = 0

  const run = await cli(seed, 'rolling-restart', '--role', 'app', '--mode', 'restart', '--grace', '0', '--timeout', '90s')
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^\[1\/2\] app-a: draining \(out of routing and its ELB target group, grace 0\.0s\), then stopping to be restarted$/m)
  t.match(run.stderr, /^\[1\/2\] app-a: restarted \(pid \d+ -> \d+\), undrained, healthy, healthy in its ELB target group \([\d.]+s\)$/m)
  t.match(run.stderr, /^\[2\/2\] app-b: restarted \(pid \d+ -> \d+\), undrained, healthy, healthy in its ELB target group \([\d.]+s\)$/m)
  t.same([a.exits, b.exits], [[RESTART_EXIT_CODE], [RESTART_EXIT_CODE]])

  // The ELB server's log, in order: app-a leaves and registers again, and is read `healthy` before app-b leaves.
  const port = (c: { params: Record<string, string> }) => c.params['Targets.member.1.Port']
  const calls = elb.calls.map((c) => `${c.action}${port(c) ? `:${port(c) === portA ? 'a' : port(c) === portB ? 'b' : port(c)}` : ''}`)
  t.comment(calls.join(' '))
  const first = (what: string) => calls.indexOf(what)
  t.ok(first('DeregisterTargets:a') >= 0 && first('DeregisterTargets:a') < first('RegisterTargets:a'), 'app-a left, then registered again')
  t.ok(first('RegisterTargets:a') < first('DeregisterTargets:b'), 'app-b left only after app-a registered again')
  // app-a's health reads between its register and app-b's deregister: `initial` 4 times, then `healthy`.
  const reads = calls.slice(first('RegisterTargets:a'), first('DeregisterTargets:b')).filter((c) => c === 'DescribeTargetHealth:a').length
  t.ok(reads >= 5, `app-a was read ${reads} times (4 initial, then healthy) before app-b left`)
  t.ok(first('RegisterTargets:b') > first('DeregisterTargets:b'), 'app-b registered again')
  t.equal(elb.state(ARN, '127.0.0.1', Number(portA)), 'healthy')
  t.equal(elb.state(ARN, '127.0.0.1', Number(portB)), 'healthy')
  const nodes = await admin.request<NodeView[]>('nodes', { role: 'app' })
  t.same(nodes.map((n) => [n.id, n.drain, n.elb?.state]).sort(), [['app-a', null, 'healthy'], ['app-b', null, 'healthy']])
})
