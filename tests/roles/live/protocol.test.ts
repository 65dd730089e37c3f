// Live protocol conformance against a real single Live node (it homes every channel): every op and error code,
// hostile frames, recovery, msgpack, tokens, SSE, long-poll and the HTTP API.
import t from 'tap'
import { startNode } from '../../helpers/cluster.js'
import { connectLive, http, sse, token, type LiveClient } from '../../helpers/live.js'

const node = await startNode(t, 'live', { children: 2, 'live-public': 'news:*', 'live-history-size': 5, 'live-poll-timeout': '300ms' })
const port = node.port
t.teardown(() => node.stop())

async function pubHttp(ch: string, data: unknown, tok = token({ pub: ['*'] })) {
  return http(port, 'POST', `/pub/${ch}`, { body: JSON.stringify(data), token: tok })
}

t.test('ping, sub, pub with ack, msg, unsub', async (t) => {
  const c = await connectLive(t, port, { token: token({ sub: ['room:*'], pub: ['room:1'] }) })
  t.match(await c.call({ op: 'ping' }), { op: 'pong' })
  const ok = await c.call({ op: 'sub', ch: 'room:1' })
  t.match(ok, { op: 'sub-ok', ch: 'room:1', recovered: true })
  t.type(ok['seq'], 'number')
  const ack = await c.call({ op: 'pub', ch: 'room:1', data: { text: 'hi' } })
  t.match(ack, { op: 'ack', ch: 'room:1', seq: (ok['seq'] as number) + 1 })
  const msg = await c.next((f) => f.op === 'msg', 'msg')
  t.match(msg, { op: 'msg', ch: 'room:1', seq: ack['seq'], data: { text: 'hi' } })
  t.type(msg['ts'], 'number')
  t.match(await c.call({ op: 'unsub', ch: 'room:1' }), { op: 'ack', ch: 'room:1' })
  await pubHttp('room:1', 'after unsub')
  t.match(await c.call({ op: 'ping' }), { op: 'pong' })
  t.equal(c.messages('room:1').length, 1, 'nothing after unsub')
})

t.test('every error code answers its op and the connection stays up', async (t) => {
  const expired = token({ sub: ['*'], ttlMs: 1, now: Date.now() - 10_000 })
  const c = await connectLive(t, port, { token: token({ sub: ['room:*'], pub: ['room:1'] }) })
  const err = async (frame: Record<string, unknown>, code: number) => {
    const answer = await c.call(frame)
    t.match(answer, { op: 'err', code }, `${JSON.stringify(frame)} -> ${code}`)
    t.type(answer['message'], 'string')
    t.match(answer['data'], { op: frame['op'] })
  }
  await err({ op: 'bogus' }, 4001)
  await err({ op: 'sub', ch: 'bad channel!' }, 4002)
  await err({ op: 'sub', ch: 'x'.repeat(129) }, 4002)
  await err({ op: 'sub', ch: 'room:1', since: -1 }, 4003)
  await err({ op: 'pub', ch: 'room:1' }, 4003)
  await err({ op: 'pub', ch: 'room:1', data: 'x'.repeat(66_000) }, 4004)
  await err({ op: 'sub', ch: 'secret:1' }, 4030)
  await err({ op: 'pub', ch: 'room:2', data: 1 }, 4030)
  await err({ op: 'presence', ch: 'room:1' }, 4030)
  await err({ op: 'unsub', ch: 'room:9' }, 4040)
  t.match(await c.call({ op: 'sub', ch: 'room:3' }), { op: 'sub-ok' })
  await err({ op: 'sub', ch: 'room:3' }, 4090)

  c.sendRaw('{not json')
  t.match(await c.next((f) => f.op === 'err' && f['code'] === 4000 && /JSON/.test(String(f['message'])), 'invalid JSON'), { code: 4000 })
  c.sendRaw(Buffer.from([0xc1, 0xff, 0x00]), true)
  t.match(await c.next((f) => f.op === 'err' && /binary frame/.test(String(f['message'])), 'binary on JSON'), { code: 4000 })
  c.sendRaw('[1,2]')
  c.sendRaw('{"op": 5}')
  t.match(await c.call({ op: 'ping' }), { op: 'pong' }, 'still up after hostile frames')
  t.equal(c.frames.filter((f) => f['code'] === 4000).length, 4)

  const anon = await connectLive(t, port)
  t.match(await anon.call({ op: 'sub', ch: 'room:1' }), { op: 'err', code: 4010 }, 'no token, not public')
  t.match(await anon.call({ op: 'sub', ch: 'news:today' }), { op: 'sub-ok' }, 'public channel without a token')
  t.match(await anon.call({ op: 'pub', ch: 'news:today', data: 1 }), { op: 'err', code: 4010 }, 'public is for sub only')

  await t.rejects(connectLive(t, port, { token: expired }), { message: /401/ }, 'an expired token is refused at the upgrade')
  await t.rejects(connectLive(t, port, { token: `${token({ sub: ['*'] })}x` }), { message: /401/ }, 'a forged token is refused at the upgrade')
})

t.test('a frame far past the limit drops that connection; others are unaffected', async (t) => {
  const c = await connectLive(t, port)
  const other = await connectLive(t, port)
  c.sendRaw(JSON.stringify({ op: 'ping', pad: 'x'.repeat(200_000) }))
  const closed = await c.closed
  t.equal(closed.code, 1006, 'uWS drops it without a close frame')
  t.match(await other.call({ op: 'ping' }), { op: 'pong' })
})

t.test('msgpack subprotocol: binary frames both ways; text frames are refused with 4000', async (t) => {
  const tok = token({ sub: ['mp:*'], pub: ['mp:*'] })
  const c = await connectLive(t, port, { token: tok, msgpack: true })
  t.equal(c.ws.protocol, 'espra.msgpack')
  t.match(await c.call({ op: 'sub', ch: 'mp:1' }), { op: 'sub-ok', ch: 'mp:1' })
  const json = await connectLive(t, port, { token: tok })
  await json.call({ op: 'sub', ch: 'mp:1' })
  await json.call({ op: 'pub', ch: 'mp:1', data: { n: 1, bin: 'ok' } })
  t.match(await c.next((f) => f.op === 'msg', 'msgpack msg'), { op: 'msg', ch: 'mp:1', data: { n: 1, bin: 'ok' } })
  t.match(await json.next((f) => f.op === 'msg', 'json msg'), { op: 'msg', ch: 'mp:1' })
  c.sendRaw('{"op":"ping"}')
  t.match(await c.next((f) => f.op === 'err', 'text on msgpack'), { code: 4000 })
})

t.test('recovery: since gets every missed message, or recovered:false when history no longer covers it', async (t) => {
  const tok = token({ sub: ['rec:*'], pub: ['rec:*'] })
  const a = await connectLive(t, port, { token: tok })
  const ok = await a.call({ op: 'sub', ch: 'rec:1' })
  await a.call({ op: 'pub', ch: 'rec:1', data: 1 })
  const first = await a.next((f) => f.op === 'msg', 'first')
  a.close()
  await a.closed
  for (const n of [2, 3, 4]) await pubHttp('rec:1', n)
  const b = await connectLive(t, port, { token: tok })
  const back = await b.call({ op: 'sub', ch: 'rec:1', since: first['seq'] })
  t.match(back, { op: 'sub-ok', recovered: true, seq: (ok['seq'] as number) + 4 })
  await b.next((f) => f.op === 'msg' && f['data'] === 4, 'last missed')
  t.same(b.messages('rec:1').map((f) => f['data']), [2, 3, 4], 'the missed ones, in order, once')
  await pubHttp('rec:1', 5)
  await b.next((f) => f.op === 'msg' && f['data'] === 5, 'live after recovery')
  t.same(b.messages('rec:1').map((f) => f['seq']), [2, 3, 4, 5].map((n) => (ok['seq'] as number) + n), 'sequences contiguous')

  for (let n = 6; n <= 12; n++) await pubHttp('rec:1', n)
  const c = await connectLive(t, port, { token: tok })
  const base = ok['seq'] as number
  t.match(await c.call({ op: 'sub', ch: 'rec:1', since: first['seq'] }), { op: 'sub-ok', recovered: false, gap: { from: base + 2, to: base + 7, cause: 'overflow' } }, 'history of 5 no longer covers the gap: 2 to 7 were pushed out')
  await c.next((f) => f.op === 'msg' && f['data'] === 12, 'the ones held after the gap')
  t.same(c.messages('rec:1').map((f) => f['seq']), [8, 9, 10, 11, 12].map((n) => base + n), 'the five still held follow the gap, in order, once')
  t.match(await c.call({ op: 'sub', ch: 'rec:2', since: 12345 }), { op: 'sub-ok', recovered: false, gap: { from: 12346, cause: 'lost' } }, 'a since from before this home is not covered: lost')
  t.match(await http(port, 'GET', `/history/rec:1?since=${first['seq']}`, { token: tok }), { status: 200, body: { recovered: false, gap: { from: base + 2, to: base + 7, cause: 'overflow' }, messages: [8, 9, 10, 11, 12].map((n) => ({ seq: base + n, data: n })) } }, 'GET /history says the same, with the messages held after the gap')
})

t.test('presence: one member per user across connections, joins and leaves, counts', async (t) => {
  const alice = token({ sub: ['pr:*'], presence: ['pr:*'], user: 'alice', info: { name: 'Alice' } })
  const watcher = await connectLive(t, port, { token: token({ sub: ['pr:*'], presence: ['pr:*'], user: 'bob' }) })
  await watcher.call({ op: 'sub', ch: 'pr:1' })
  const a1 = await connectLive(t, port, { token: alice })
  const a2 = await connectLive(t, port, { token: alice })
  await a1.call({ op: 'sub', ch: 'pr:1' })
  await a2.call({ op: 'sub', ch: 'pr:1' })
  await watcher.next((f) => f.op === 'presence' && String(JSON.stringify(f['joins'])).includes('alice'), 'alice joins')
  const p = await watcher.call({ op: 'presence', ch: 'pr:1' })
  t.match(p, { op: 'presence', ch: 'pr:1', count: 2 })
  t.same((p['members'] as { user: string }[]).map((m) => m.user).sort(), ['alice', 'bob'])
  t.same((p['members'] as { user: string; info?: unknown }[]).find((m) => m.user === 'alice')!.info, { name: 'Alice' })
  a1.close()
  await a1.closed
  t.match(await watcher.call({ op: 'presence', ch: 'pr:1' }), { count: 2 }, 'alice is still there on her other connection')
  a2.close()
  await watcher.next((f) => f.op === 'presence' && (f['leaves'] as string[] | undefined)?.includes('alice') === true, 'alice leaves')
  t.equal(watcher.frames.filter((f) => f.op === 'presence' && String(JSON.stringify(f['joins'])).includes('alice')).length, 1, 'one join for two connections')
  const h = await http(port, 'GET', '/presence/pr:1', { token: token({ presence: ['pr:*'] }) })
  t.match(h, { status: 200, body: { ch: 'pr:1', count: 1, members: [{ user: 'bob' }] } })
})

t.test('HTTP: pub, history, presence, with their errors', async (t) => {
  const p1 = await pubHttp('h:1', { a: 1 })
  t.match(p1, { status: 200, body: { ch: 'h:1' } })
  const seq = p1.body['seq'] as number
  await pubHttp('h:1', { a: 2 })
  const readTok = token({ sub: ['h:*'] })
  t.match(await http(port, 'GET', `/history/h:1?since=${seq - 1}`, { token: readTok }), { status: 200, body: { ch: 'h:1', recovered: true, seq: seq + 1, messages: [{ seq, data: { a: 1 } }, { seq: seq + 1, data: { a: 2 } }] } })
  t.match(await http(port, 'GET', `/history/h:1?since=${seq - 1}&limit=1`, { token: readTok }), { body: { messages: [{ seq }] } })
  t.match(await http(port, 'GET', '/history/h:1?since=abc', { token: readTok }), { status: 400, body: { code: 4003 } })
  t.match(await http(port, 'GET', '/history/h:1'), { status: 401, body: { code: 4010 } })
  t.match(await http(port, 'GET', '/history/h:1', { token: token({ sub: ['other'] }) }), { status: 403, body: { code: 4030 } })
  t.match(await http(port, 'GET', '/history/h:1', { token: token({ sub: ['*'], ttlMs: 1, now: Date.now() - 5000 }) }), { status: 401, body: { code: 4011 } })
  t.match(await http(port, 'POST', '/pub/h:1', { body: '{oops', token: token({ pub: ['*'] }) }), { status: 400, body: { code: 4000 } })
  t.match(await http(port, 'POST', '/pub/bad%20name', { body: '1', token: token({ pub: ['*'] }) }), { status: 400, body: { code: 4002 } })
  t.match(await http(port, 'POST', '/pub/h:1', { body: JSON.stringify('x'.repeat(70_000)), token: token({ pub: ['*'] }) }), { status: 413, body: { code: 4004 } })
  t.match(await http(port, 'POST', '/pub/h:1', { body: '1', headers: { authorization: 'Basic abc' } }), { status: 401, body: { code: 4010 } })
  t.match(await http(port, 'GET', '/presence/h:1', { token: readTok }), { status: 403, body: { code: 4030 } })
})

t.test('SSE: several channels, live messages, Last-Event-ID recovery', async (t) => {
  const s = await sse(t, port, '/sse?ch=news:a&ch=news:b')
  await s.next((e) => e.data.op === 'sub-ok' && e.data['ch'] === 'news:b', 'both subscribed')
  await pubHttp('news:a', 'a1')
  await pubHttp('news:b', 'b1')
  const b1 = await s.next((e) => e.data['data'] === 'b1', 'b1')
  t.match(b1.id, /^news:a=\d+,news:b=\d+$/, 'the id carries every channel position')
  s.close()
  await pubHttp('news:a', 'a2')
  await pubHttp('news:b', 'b2')
  const again = await sse(t, port, '/sse?ch=news:a&ch=news:b', b1.id)
  await again.next((e) => e.data['data'] === 'b2', 'b2 recovered')
  await again.next((e) => e.data['data'] === 'a2', 'a2 recovered')
  t.same(again.events.filter((e) => e.data.op === 'msg').map((e) => e.data['data']).sort(), ['a2', 'b2'], 'only the missed ones')
  t.ok(again.events.filter((e) => e.data.op === 'sub-ok').every((e) => e.data['recovered'] === true))
  const stale = await sse(t, port, '/sse?ch=news:a', 'news:a=5')
  const reset = await stale.next((e) => e.data.op === 'sub-ok', 'sub-ok for a position this home never had')
  t.match(reset.data, { recovered: false, gap: { from: 6, cause: 'lost' } }, 'SSE reports the gap too')
  stale.close()
  await t.rejects(sse(t, port, '/sse?ch=room:1'), { message: /401/ })
  await t.rejects(sse(t, port, '/sse?ch=bad!'), { message: /400/ })
})

t.test('long-poll: answers at once with missed messages, waits for the next, times out empty', async (t) => {
  const first = await pubHttp('news:p', 1)
  const seq = first.body['seq'] as number
  await pubHttp('news:p', 2)
  t.match(await http(port, 'GET', `/poll?ch=news:p&since=${seq - 1}`), { status: 200, body: { ch: 'news:p', recovered: true, messages: [{ data: 1 }, { data: 2 }] } })
  // Poll until the message comes: an empty answer (the poll timed out first on a slow machine) just means poll again.
  const late = pubHttp('news:p', 3)
  let waiting = await http(port, 'GET', `/poll?ch=news:p&since=${seq + 1}`)
  while ((waiting.body['messages'] as unknown[]).length === 0) waiting = await http(port, 'GET', `/poll?ch=news:p&since=${seq + 1}`)
  t.match(waiting, { status: 200, body: { recovered: true, messages: [{ seq: seq + 2, data: 3 }] } })
  await late
  t.match(await http(port, 'GET', `/poll?ch=news:p&since=${seq + 2}`), { status: 200, body: { recovered: true, messages: [], seq: seq + 2 } }, 'timeout answers empty')
  t.match(await http(port, 'GET', '/poll?ch=news:p&since=5'), { body: { recovered: false, gap: { from: 6, to: seq - 1, cause: 'lost' }, messages: [] } })
  t.match(await http(port, 'GET', '/poll?ch=room:1'), { status: 401, body: { code: 4010 } })
})

t.test('a stopping node closes its WebSockets with 1012 reconnect', async (t) => {
  const extra = await startNode(t, 'live', { children: 1, 'live-public': '*' })
  const c: LiveClient = await connectLive(t, extra.port)
  await c.call({ op: 'sub', ch: 'x' })
  const stopped = extra.stop()
  t.same(await c.closed, { code: 1012, reason: 'reconnect' })
  t.same(await stopped, { code: 0, signal: null })
})

t.test('a retried publish with the same id is stored once and answered with the first seq: WebSocket string id, Idempotency-Key', async (t) => {
  const tok = token({ sub: ['idem:*'], pub: ['idem:*'] })
  const c = await connectLive(t, port, { token: tok })
  await c.call({ op: 'sub', ch: 'idem:1' })
  // The helper's call() numbers its frames; a publish id is the client's own string.
  const acks = () => c.frames.filter((f) => f.op === 'ack' && f['id'] === 'pub-7f3a')
  c.send({ op: 'pub', ch: 'idem:1', data: 'once', id: 'pub-7f3a' })
  const ack = await c.next((f) => f.op === 'ack' && f['id'] === 'pub-7f3a', 'the first ack')
  c.send({ op: 'pub', ch: 'idem:1', data: 'once', id: 'pub-7f3a' })
  await c.next(() => acks().length === 2, 'the second ack')
  t.equal(acks()[1]!['seq'], ack['seq'], 'the retry is acked with the first seq')
  const byHttp = await http(port, 'POST', '/pub/idem:1', { body: '"by http"', token: tok, headers: { 'idempotency-key': 'http-1' } })
  t.equal(byHttp.status, 200)
  const retried = await http(port, 'POST', '/pub/idem:1', { body: '"by http"', token: tok, headers: { 'idempotency-key': 'http-1' } })
  t.same(retried.body, byHttp.body, 'POST /pub with the same Idempotency-Key: the same answer')
  t.equal(byHttp.body['seq'], (ack['seq'] as number) + 1, 'nothing was stored in between')
  await c.next((f) => f.op === 'msg' && f['data'] === 'by http', 'the HTTP message arrives')
  t.same(c.messages('idem:1').map((f) => f['data']), ['once', 'by http'], 'each delivered once')
  t.match(await http(port, 'POST', '/pub/idem:1', { body: '1', token: tok, headers: { 'idempotency-key': 'has space' } }), { status: 400, body: { code: 4003 } }, 'a key with a space is refused')
  t.match(await http(port, 'POST', '/pub/idem:1', { body: '1', token: tok, headers: { 'idempotency-key': 'k'.repeat(129) } }), { status: 400, body: { code: 4003 } }, 'a key over 128 characters is refused')
  const numbered = await c.call({ op: 'pub', ch: 'idem:1', data: 'n' })
  const numberedAgain = await c.call({ op: 'pub', ch: 'idem:1', data: 'n' })
  t.equal(numberedAgain['seq'], (numbered['seq'] as number) + 1, 'numeric call ids only correlate: two messages')
})
