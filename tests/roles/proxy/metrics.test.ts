// Proxy metrics from real traffic: a real seed and proxy (2 children) in front of stand-in Live nodes.
import t from 'tap'
import { answered, scrape, type PromText } from '../../helpers/prom-text.js'
import { cluster, raw, send } from '../../helpers/proxy-cluster.js'

const H = 'espra_proxy_upstream_request_duration_seconds'
const total = (p: PromText, name: string, labels: Record<string, string> = {}) => p.find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('forwarded answers by status class, quick answers by reason, upstream connections, per child', async (t) => {
  const { proxy } = await cluster(t)
  const before = await scrape(proxy.metricsPort)
  for (const child of ['0', '1']) {
    t.equal(before.find(`${H}_count`, { child }).length, 4, `child ${child}: 2xx to 5xx series exist before any traffic`)
    t.ok(before.find('espra_proxy_quick_answers_total', { child, reason: 'unknown_host', status: '404' }).length === 1, `child ${child}: quick answers by reason`)
  }

  for (let i = 0; i < 3; i++) t.equal((await send(proxy.port, { path: '/status/404' })).status, 404)
  for (let i = 0; i < 2; i++) t.equal((await send(proxy.port, { path: `/ok/${i}` })).status, 200)
  t.equal((await send(proxy.port, { path: '/status/503' })).status, 503)
  for (let i = 0; i < 2; i++) t.equal((await send(proxy.port, { path: '/', headers: { host: 'elsewhere.example' } })).status, 404)
  t.match(await raw(proxy.port, 'BREW /pot HTTP/1.1\r\nHost: us-1.live.localhost\r\n\r\n'), /^HTTP\/1\.1 501 /)
  t.match(await raw(proxy.port, 'NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 /)

  const after = await scrape(proxy.metricsPort)
  t.equal(answered(after, H, { status: '4xx' }) - answered(before, H, { status: '4xx' }), 3, 'three 404s from the Live node: 4xx +3')
  t.equal(answered(after, H, { status: '2xx' }) - answered(before, H, { status: '2xx' }), 2, '2xx +2')
  t.equal(answered(after, H, { status: '5xx' }) - answered(before, H, { status: '5xx' }), 1, '5xx +1')
  t.equal(answered(after, H, { status: '3xx' }) - answered(before, H, { status: '3xx' }), 0, '3xx unchanged')
  const quick = (p: PromText, reason: string) => total(p, 'espra_proxy_quick_answers_total', { reason })
  t.equal(quick(after, 'unknown_host') - quick(before, 'unknown_host'), 2, 'unknown host answered twice')
  t.equal(quick(after, 'not_implemented') - quick(before, 'not_implemented'), 1, 'an unknown method once')
  t.equal(quick(after, 'bad_request') - quick(before, 'bad_request'), 1, 'a bad head once')
  t.equal(quick(after, 'no_node') - quick(before, 'no_node'), 0, 'never without a Live node')
  // Health checks are not requests; the bad head never became one; the rest are 9.
  t.equal(total(after, 'espra_proxy_http_requests_total') - total(before, 'espra_proxy_http_requests_total'), 9)
  t.ok(total(after, 'espra_proxy_upstream_connections_opened_total') >= 1, 'connections to Live nodes opened')
  t.equal(total(after, 'espra_proxy_upstream_failures_total'), 0)
  t.end()
})
