// A real Live node behind a real proxy: WebSocket, SSE, long-poll and the HTTP API all work through
// the proxy's live host, and a WebSocket reconnect through it recovers what was missed.
// (Node's fetch drops a Host header it is given, and `us-1.live.localhost` does not resolve
// in Node here, so HTTP requests go over node:http with an explicit Host; the browser test
// uses the real name.)
import t from 'tap'
import WebSocket from 'ws'
import { waitFor } from '../helpers/cluster.js'
import { send, type HttpAnswer } from '../helpers/http.js'
import { sse, token, type Frame } from '../helpers/live.js'
import { LIVE_HOST, liveBehindProxy } from '../helpers/live-proxy.js'

const { proxy } = await liveBehindProxy(t)
const pubToken = token({ pub: ['pub:*'] })


function viaProxy(method: string, path: string, opts: { body?: string; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  return send({ host: '127.0.0.1', port: proxy.port, method, path, agent: false, headers: { host: LIVE_HOST, ...opts.headers } }, opts.body)
}

async function publish(ch: string, data: unknown): Promise<{ seq: number }> {
  const answer = await viaProxy('POST', `/pub/${ch}`, { body: JSON.stringify(data), headers: { authorization: `Bearer ${pubToken}`, 'content-type': 'application/json' } })
  if (answer.status !== 200) throw new Error(`publish answered ${answer.status}: ${answer.body}`)
  return JSON.parse(answer.body) as { seq: number }
}

function openWs(path = '/ws'): Promise<{ ws: WebSocket; frames: Frame[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}${path}`, { headers: { host: LIVE_HOST }, perMessageDeflate: false })
    const frames: Frame[] = []
    ws.on('message', (data: Buffer) => frames.push(JSON.parse(data.toString('utf8')) as Frame))
    ws.once('open', () => resolve({ ws, frames }))
    ws.once('error', reject)
    t.teardown(() => ws.terminate())
  })
}

t.test('WebSocket through the proxy: sub, a publish over HTTP arrives, reconnect with since recovers', async (t) => {
  const ch = 'pub:ws'
  const { ws, frames } = await openWs()
  ws.send(JSON.stringify({ op: 'sub', ch, id: 1 }))
  const ok = await waitFor('sub-ok', () => frames.find((f) => f.op === 'sub-ok' && f['id'] === 1))
  t.equal(ok['ch'], ch)
  const first = await publish(ch, { n: 1 })
  const msg = await waitFor('msg 1', () => frames.find((f) => f.op === 'msg'))
  t.match(msg, { ch, seq: first.seq, data: { n: 1 } }, 'the message published through the proxy arrives through the proxy')

  const closed = new Promise((resolve) => ws.once('close', resolve))
  ws.close()
  await closed
  const missed = [await publish(ch, { n: 2 }), await publish(ch, { n: 3 })]
  const again = await openWs()
  again.ws.send(JSON.stringify({ op: 'sub', ch, since: first.seq, id: 2 }))
  await waitFor('both missed messages', () => again.frames.filter((f) => f.op === 'msg').length >= 2)
  t.match(again.frames.find((f) => f.op === 'sub-ok'), { recovered: true })
  t.same(again.frames.filter((f) => f.op === 'msg').map((f) => [f['seq'], f['data']]), missed.map((m, i) => [m.seq, { n: i + 2 }]), 'recovered in order, once')
  again.ws.close()
})

t.test('SSE through the proxy: streamed, not buffered; Last-Event-ID recovers', async (t) => {
  const ch = 'pub:sse'
  const open = (lastEventId?: string) => sse(t, proxy.port, `/sse?ch=${ch}`, lastEventId, { host: LIVE_HOST, accept: 'text/event-stream' })
  const stream = await open()
  t.equal(stream.headers['content-type'], 'text/event-stream')
  await stream.next((e) => e.data.op === 'sub-ok', 'sub-ok event')
  // One at a time: each event arrives before the next is published, so nothing waits in a buffer.
  for (let n = 1; n <= 3; n++) {
    await publish(ch, { n })
    await stream.next((e) => e.data.op === 'msg' && (e.data['data'] as { n: number }).n === n, `event ${n}`)
  }
  const lastId = stream.events.filter((e) => e.data.op === 'msg').at(-1)!.id
  stream.close()
  const missed = await publish(ch, { n: 4 })
  const again = await open(lastId)
  const got = await again.next((e) => e.data.op === 'msg', 'missed event')
  t.match(got.data, { seq: missed.seq, data: { n: 4 } }, 'Last-Event-ID through the proxy recovers the missed message')
  again.close()
})

t.test('long-poll through the proxy: waits for the next message, answers at once when behind', async (t) => {
  const ch = 'pub:poll'
  const start = await publish(ch, { n: 0 })
  const waiting = viaProxy('GET', `/poll?ch=${ch}&since=${start.seq}`)
  // The poll is pending at the Live node; the publish below completes it.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const next = await publish(ch, { n: 1 })
  const answer = await waiting
  t.equal(answer.status, 200)
  t.match(JSON.parse(answer.body), { ch, recovered: true, messages: [{ op: 'msg', seq: next.seq, data: { n: 1 } }] })

  const behind = JSON.parse((await viaProxy('GET', `/poll?ch=${ch}&since=${start.seq}`)).body) as { messages: Frame[] }
  t.same(behind.messages.map((m) => m['seq']), [next.seq], 'a poll that is behind is answered at once with what it missed')
})

t.test('HTTP API through the proxy: history, and 401 without a token', async (t) => {
  const ch = 'pub:http'
  const a = await publish(ch, 'a')
  const b = await publish(ch, 'b')
  const history = await viaProxy('GET', `/history/${ch}?since=${a.seq - 1}`)
  t.equal(history.status, 200)
  t.same((JSON.parse(history.body) as { messages: Frame[] }).messages.map((m) => [m['seq'], m['data']]), [[a.seq, 'a'], [b.seq, 'b']])
  const refused = await viaProxy('POST', `/pub/${ch}`, { body: '"x"' })
  t.equal(refused.status, 401)
  t.match(JSON.parse(refused.body), { code: 4010 })
})
