// Live metrics from real clients: connections by transport, channels, subscriptions, deliveries, per child.
import t from 'tap'
import { get, startNode, waitFor } from '../../helpers/cluster.js'
import { connectLive, http, sse, token } from '../../helpers/live.js'
import { answered, scrape, type PromText } from '../../helpers/prom-text.js'

const total = (p: PromText, name: string, labels: Record<string, string> = {}) => p.find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('connections by transport, subscriptions and deliveries move by what the clients did', async (t) => {
  const node = await startNode(t, 'live', { children: 2, 'live-public': 'news:*', 'live-poll-timeout': '30s' })
  const before = await scrape(node.metricsPort)
  for (const child of ['0', '1']) {
    for (const transport of ['ws', 'sse', 'long-poll']) t.equal(before.value('espra_live_connections', { child, transport }), 0, `child ${child}: no ${transport} yet`)
  }
  t.equal(total(before, 'espra_live_hub_channels'), 0, 'no channel homed yet')

  const a = await connectLive(t, node.port)
  const b = await connectLive(t, node.port)
  for (const c of [a, b]) t.match(await c.call({ op: 'sub', ch: 'news:1' }), { op: 'sub-ok' })
  const stream = await sse(t, node.port, '/sse?ch=news:1')
  await stream.next((e) => e.data.op === 'sub-ok', 'sse subscribed')
  // A long-poll waits for the next message on news:2 (since = the current sequence).
  const seq = (await http(node.port, 'GET', '/history/news:2')).body['seq'] as number
  const poll = http(node.port, 'GET', `/poll?ch=news:2&since=${seq}`)
  const open = await waitFor('every connection counted', async () => {
    const p = await scrape(node.metricsPort)
    return total(p, 'espra_live_connections', { transport: 'long-poll' }) === 1 && total(p, 'espra_live_connections', { transport: 'sse' }) === 1 && p
  })
  t.equal(total(open, 'espra_live_connections', { transport: 'ws' }), 2, 'two WebSockets')
  t.equal(total(open, 'espra_live_subscriptions'), 4, 'two WebSocket subscriptions, one SSE and one long-poll listener')
  t.ok(total(open, 'espra_live_channels') >= 2, 'news:1 and news:2 held in the children')
  // Homed by the parent (--live-homes node) or by the children, one or both (children, the default).
  t.equal(total(open, 'espra_live_hub_channels'), 2, 'both channels homed on this node')

  const pub = token({ pub: ['*'] })
  t.equal((await http(node.port, 'POST', '/pub/news:1', { body: '"one"', token: pub })).status, 200)
  t.equal((await http(node.port, 'POST', '/pub/news:2', { body: '"two"', token: pub })).status, 200)
  t.equal((await poll).status, 200, 'the long-poll got its message')
  await a.next((f) => f.op === 'msg', 'a got it')
  await b.next((f) => f.op === 'msg', 'b got it')
  await stream.next((e) => e.data.op === 'msg', 'sse got it')
  const after = await scrape(node.metricsPort)
  // news:1 reached 2 WebSockets and 1 SSE stream; news:2 one long-poll: 4 deliveries. Each message was fanned out
  // by the children that hold its channel.
  t.equal(total(after, 'espra_live_deliveries_total') - total(before, 'espra_live_deliveries_total'), 4, 'four deliveries')
  t.ok(total(after, 'espra_live_messages_total') >= 2, 'messages fanned out')
  t.equal(total(after, 'espra_live_connections', { transport: 'long-poll' }), 0, 'the answered long-poll is gone')
  t.equal(total(after, 'espra_live_slow_consumer_drops_total'), 0)
  const h = 'espra_live_http_request_duration_seconds'
  t.ok(answered(after, h, { status: '2xx' }) - answered(before, h, { status: '2xx' }) >= 4, 'HTTP answers (history, publishes, the long-poll) in the 2xx histogram')
  t.equal((await get(node.port, '/pub/news:1')).status, 404)
  const last = await scrape(node.metricsPort)
  t.equal(answered(last, h, { status: '4xx' }) - answered(after, h, { status: '4xx' }), 1, 'a GET on /pub is a 404: 4xx +1')

  a.close()
  stream.close()
  await waitFor('closed connections leave the gauges', async () => {
    const p = await scrape(node.metricsPort)
    return total(p, 'espra_live_connections', { transport: 'ws' }) === 1 && total(p, 'espra_live_connections', { transport: 'sse' }) === 0
  })
  t.end()
})
