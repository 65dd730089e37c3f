// Metrics by child, never summed: real nodes, real requests, the exposition read by a strict parser.
import t from 'tap'
import { renderExposition } from '../../../lib/process/metrics.js'
import { get, startNode, waitFor } from '../../helpers/cluster.js'
import { answered, parsePromText, scrape } from '../../helpers/prom-text.js'

t.test('the strict parser refuses what Prometheus would', async (t) => {
  const ok = '# HELP a_total x\n# TYPE a_total counter\na_total{child="0"} 1\na_total{child="1"} 2\n'
  t.equal(parsePromText(ok).value('a_total', { child: '1' }), 2)
  t.throws(() => parsePromText(`${ok}# HELP a_total x\n`), /HELP (twice|after samples)/)
  t.throws(() => parsePromText('# TYPE a gauge\na 1\na 2\n'), /series twice/)
  t.throws(() => parsePromText('# TYPE a gauge\na{x=1} 1\n'), /unquoted/)
  t.throws(() => parsePromText('# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="y"} 2\n'), /split/)
  t.throws(() => parsePromText('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n'), /cumulative/)
  t.throws(() => parsePromText('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 2\n'), /_count/)
})

t.test('renderExposition: one HELP and TYPE per family, labels per part, escaped', async (t) => {
  const family = (value: number, labels: Record<string, string> = {}) => [{ name: 'x_bytes', help: 'a "help"\nline', type: 'gauge', values: [{ value, labels }] }]
  const text = renderExposition([
    { labels: { process: 'parent' }, metrics: family(1) },
    { labels: { child: '0' }, metrics: family(2, { path: 'a"b\\c' }) },
    { labels: { child: '1' }, metrics: family(3) },
  ])
  const parsed = parsePromText(text)
  t.equal(text.match(/^# HELP x_bytes/gm)?.length, 1, 'one HELP')
  t.equal(text.match(/^# TYPE x_bytes/gm)?.length, 1, 'one TYPE')
  t.equal(parsed.value('x_bytes', { process: 'parent' }), 1)
  t.equal(parsed.value('x_bytes', { child: '0', path: 'a"b\\c' }), 2, 'a quote and a backslash survive')
  t.equal(parsed.value('x_bytes', { child: '1' }), 3)
})

t.test('with --children 2 every child has its own process and request series, counted exactly', async (t) => {
  const node = await startNode(t, 'fileserver', { children: 2 })
  const before = await scrape(node.metricsPort)
  const pids = node.childPids().sort((a, b) => a - b)
  t.equal(pids.length, 2)
  const slotPids = [0, 1].map((c) => before.value('espra_node_child_pid', { process: 'parent', child: String(c) })).sort((a, b) => a - b)
  t.same(slotPids, pids, 'espra_node_child_pid names the children the logs name')

  for (const name of ['process_resident_memory_bytes', 'process_cpu_seconds_total', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
    t.ok(before.value(name, { process: 'parent' }) >= 0, `${name} for the parent`)
    for (const child of ['0', '1']) t.ok(before.value(name, { child }) >= 0, `${name} for child ${child}`)
    t.equal(before.find(name).length, 3, `${name}: parent and two children, nothing summed`)
  }
  t.equal(before.find('espra_fileserver_http_requests_total').length, 2, 'one request counter per child')
  t.equal(before.types.get('espra_fileserver_http_request_duration_seconds'), 'histogram')

  const h = 'espra_fileserver_http_request_duration_seconds'
  const any = { status: '4xx' }
  const ok = { status: '2xx' }
  for (let i = 0; i < 3; i++) t.equal((await get(node.port, `/no/such/${i}`)).status, 404)
  for (let i = 0; i < 2; i++) t.equal((await get(node.port, '/_espra/health')).status, 200)
  const after = await scrape(node.metricsPort)
  t.equal(answered(after, h, any) - answered(before, h, any), 3, '3 answers of 404: the 4xx count rose by 3')
  t.equal(answered(after, h, ok) - answered(before, h, ok), 2, '2 health checks: the 2xx count rose by 2')
  t.equal(answered(after, h, { status: '5xx' }), 0)
  const requests = (p: typeof after) => p.find('espra_fileserver_http_requests_total').reduce((n, s) => n + s.value, 0)
  t.equal(requests(after) - requests(before), 5, 'requests_total over the children rose by 5')
  // Every 404 was fast, but not faster than nothing: the +Inf bucket holds them all, and the sum moved.
  const sum = (p: typeof after) => p.find(`${h}_sum`, any).reduce((n, s) => n + s.value, 0)
  t.ok(sum(after) > sum(before), 'the 4xx sum of seconds grew')
  t.end()
})

t.test('a replaced child keeps its slot label: the series goes on under a new pid', async (t) => {
  const node = await startNode(t, 'live', { children: 2 })
  const before = await scrape(node.metricsPort)
  const oldPid = before.value('espra_node_child_pid', { process: 'parent', child: '0' })
  node.proc.kill('SIGHUP')
  const after = await waitFor('child 0 replaced', async () => {
    const p = await scrape(node.metricsPort)
    const pid = p.find('espra_node_child_pid', { child: '0' })[0]?.value
    return pid !== undefined && pid !== oldPid && p.find('espra_node_child_pid').length === 2 && p
  }, 20_000)
  t.same(after.find('process_resident_memory_bytes').map((s) => s.labels).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    [{ child: '0' }, { child: '1' }, { process: 'parent' }], 'the same label sets as before the reload')
  t.end()
})
