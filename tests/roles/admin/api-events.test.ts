// GET /api/events against a real seed and admin node: the stream opens with a heartbeat comment and the seed link's
// state, then carries the seed's cluster events with id lines, in order: a Live node joining and leaving.
import { request } from 'node:http'
import t, { type Test } from 'tap'
import { FAST, startAdminApi } from '../../helpers/admin-api.js'
import { startNode, waitFor } from '../../helpers/cluster.js'

const c = await startAdminApi(t)
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)

interface SseEvent {
  id: string
  event: string
  data: any
}

function openStream(t: Test, token: string) {
  const events: SseEvent[] = []
  let text = ''
  let status = 0
  let headers: Record<string, unknown> = {}
  const req = request({ host: '127.0.0.1', port: c.admin.port, path: '/api/events', headers: { authorization: `Bearer ${token}` } }, (res) => {
    status = res.statusCode!
    headers = res.headers
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      text += chunk
      for (;;) {
        const end = text.indexOf('\n\n')
        if (end < 0) break
        const block = text.slice(0, end)
        text = text.slice(end + 2)
        const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':') && l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]))
        if (fields['event'] !== undefined) events.push({ id: fields['id']!, event: fields['event'], data: JSON.parse(fields['data']!) })
      }
    })
  })
  req.end()
  t.teardown(() => req.destroy())
  let raw = ''
  req.on('response', (res) => res.on('data', (chunk: Buffer | string) => (raw += String(chunk))))
  return { events, status: () => status, headers: () => headers, raw: () => raw }
}

t.test('a node joining and leaving arrives as joined and left events with ids', async (t) => {
  const stream = openStream(t, c.tokens.viewer)
  await waitFor('the stream opened', () => stream.events.length > 0 || undefined)
  t.equal(stream.status(), 200)
  t.equal(stream.headers()['content-type'], 'text/event-stream')
  t.match(stream.raw(), /^retry: 2000\n: heartbeat\n\n/, 'a heartbeat comment at once')
  t.match(stream.events[0], { id: '1', event: 'seed', data: { connected: true } })
  const live = await startNode(t, 'live', { seed: c.seedAddress, children: 1, 'node-id': 'live-sse-1', ...FAST })
  const joined = await waitFor('joined', () => stream.events.find((e) => e.event === 'joined' && e.data.node.id === 'live-sse-1'))
  t.match(joined.data, { type: 'joined', node: { id: 'live-sse-1', role: 'live' } })
  t.type(joined.data.at, 'number')
  await live.stop()
  const left = await waitFor('left', () => stream.events.find((e) => e.event === 'left' && e.data.node.id === 'live-sse-1'))
  t.match(left.data, { type: 'left', node: { id: 'live-sse-1' } })
  const ids = stream.events.map((e) => Number(e.id))
  t.same(ids, ids.map((_, i) => i + 1), 'ids count up from 1 without gaps')
  t.ok(Number(left.id) > Number(joined.id))
})

t.test('no token: 401, no stream', async (t) => {
  const a = await c.api('GET', '/api/events', { token: null })
  t.equal(a.status, 401)
  t.equal(a.json.code, 'ESPRA_ERR_ADMIN_UNAUTHORIZED')
})
