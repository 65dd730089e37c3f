// Gap reports over real connections to a real Live node: every cause a single node can produce (expired, overflow,
// lost) on the WebSocket, SSE, long-poll and GET /history, and resume positions or publish ids that are malformed,
// refused precisely (never read as "no position", which would hide a gap).
import t from 'tap'
import { startNode, waitFor } from '../../helpers/cluster.js'
import { connectLive, http, sse, token } from '../../helpers/live.js'

const node = await startNode(t, 'live', { children: 1, 'live-public': 'pub:*', 'live-history-size': 3, 'live-history-age': '1s', 'live-poll-timeout': '300ms' })
const port = node.port
t.teardown(() => node.stop())
const tok = token({ sub: ['*'], pub: ['*'] })

async function pub(ch: string, data: unknown): Promise<number> {
  const answer = await http(port, 'POST', `/pub/${ch}`, { body: JSON.stringify(data), token: tok })
  return answer.body['seq'] as number
}

t.test('expired: a resume from messages older than --live-history-age', async (t) => {
  const first = await pub('pub:old', 1)
  const second = await pub('pub:old', 2)
  // Wait for the age bound (1s) to pass for both: the latest-messages read comes back empty once it has.
  await waitFor('history expired', async () => ((await http(port, 'GET', '/history/pub:old', { token: tok })).body['messages'] as unknown[]).length === 0 || undefined, 20_000)
  const gap = { from: first, to: second, cause: 'expired' }
  const c = await connectLive(t, port, { token: tok })
  t.match(await c.call({ op: 'sub', ch: 'pub:old', since: first - 1 }), { op: 'sub-ok', recovered: false, seq: second, gap }, 'WebSocket')
  const s = await sse(t, port, '/sse?ch=pub:old', `pub:old=${first - 1}`)
  t.match((await s.next((e) => e.data.op === 'sub-ok', 'SSE sub-ok')).data, { recovered: false, gap }, 'SSE')
  s.close()
  t.match(await http(port, 'GET', `/poll?ch=pub:old&since=${first - 1}`), { status: 200, body: { recovered: false, seq: second, gap, messages: [] } }, 'long-poll')
  t.match(await http(port, 'GET', `/history/pub:old?since=${first - 1}`, { token: tok }), { status: 200, body: { recovered: false, gap } }, 'GET /history')
  const later = await pub('pub:old', 3)
  t.match(await c.call({ op: 'sub', ch: 'pub:other', since: 0 }), { op: 'sub-ok', recovered: false, gap: { from: 1, cause: 'lost' } }, 'a position this home never had is lost, not expired')
  t.match(await http(port, 'GET', `/poll?ch=pub:old&since=${second}`), { body: { recovered: true, messages: [{ seq: later, data: 3 }] } }, 'a resume the history covers is whole')
})

t.test('overflow: a resume from messages pushed out by --live-history-size, over SSE and the WebSocket', async (t) => {
  const seqs: number[] = []
  for (let i = 1; i <= 6; i++) seqs.push(await pub('pub:busy', i))
  const gap = { from: seqs[0], to: seqs[2], cause: 'overflow' }
  const s = await sse(t, port, '/sse?ch=pub:busy', `pub:busy=${seqs[0]! - 1}`)
  t.match((await s.next((e) => e.data.op === 'sub-ok', 'SSE sub-ok')).data, { recovered: false, seq: seqs[5], gap }, 'SSE: the first three were pushed out')
  await s.next((e) => e.data.op === 'msg' && e.data['seq'] === seqs[5], 'the last one held')
  const held = s.events.filter((e) => e.data.op === 'msg')
  t.same(held.map((e) => e.data['seq']), seqs.slice(3), 'the three still held follow the gap: the client backfills only the gap')
  t.same(held.map((e) => e.id), seqs.slice(3).map((seq) => `pub:busy=${seq}`), 'each its own position')
  t.equal(s.events.find((e) => e.data.op === 'sub-ok')!.id, `pub:busy=${seqs[2]}`, 'the sub-ok is at the end of the gap: a reconnect before the held ones arrive asks for them again')
  await pub('pub:busy', 7)
  const live = await s.next((e) => e.data.op === 'msg' && e.data['seq'] !== undefined && (e.data['seq'] as number) > seqs[5]!, 'the next live message')
  t.equal(live.data['seq'], seqs[5]! + 1)
  t.equal(live.id, `pub:busy=${seqs[5]! + 1}`, 'its id is the new position')
  s.close()
  const c = await connectLive(t, port, { token: tok })
  t.match(await c.call({ op: 'sub', ch: 'pub:busy', since: seqs[1] }), { recovered: false, gap: { from: seqs[2], to: seqs[3], cause: 'overflow' } }, 'WebSocket: from the first one missing to the one before the oldest kept')
})

t.test('malformed resume positions are refused, not read as no position', async (t) => {
  for (const bad of ['pub:x=abc', 'pub:x=-1', 'pub:x=1.5', 'pub:x', '=5', 'bad name=5', 'pub:x=99999999999999999', `pub:x=1,${'y'.repeat(200)}=2`]) {
    const refused = await sse(t, port, '/sse?ch=pub:x', bad).then(() => null, (err: { status?: number }) => err.status)
    t.equal(refused, 400, `SSE Last-Event-ID ${JSON.stringify(bad.slice(0, 30))}: 400`)
  }
  t.match(await http(port, 'GET', '/sse?ch=pub:x', { headers: { 'last-event-id': 'pub:x=abc' } }), { status: 400, body: { code: 4003 } }, 'with code 4003')
  const c = await connectLive(t, port, { token: tok })
  for (const since of [-1, 1.5, 'abc', '5', Number.MAX_SAFE_INTEGER + 2, true, {}]) {
    t.match(await c.call({ op: 'sub', ch: 'pub:x', since }), { op: 'err', code: 4003, data: { op: 'sub' } }, `WebSocket since ${JSON.stringify(since)}: 4003`)
  }
  for (const since of ['abc', '-1', '1.5', '1e3', '99999999999999999']) {
    t.match(await http(port, 'GET', `/poll?ch=pub:x&since=${since}`), { status: 400, body: { code: 4003 } }, `long-poll since=${since}: 4003`)
  }
  t.match(await c.call({ op: 'ping' }), { op: 'pong' }, 'the connection stays open')
})

t.test('publish ids: oversized or malformed ids are refused precisely; a numeric id never deduplicates', async (t) => {
  const c = await connectLive(t, port, { token: tok })
  await c.call({ op: 'sub', ch: 'pub:ids' })
  c.send({ op: 'pub', ch: 'pub:ids', data: 1, id: 'x'.repeat(65) })
  t.match(await c.next((f) => f.op === 'err', 'a 65-character id'), { code: 4003, data: { op: 'pub' } }, 'WebSocket id over 64 characters: 4003')
  for (const key of ['k'.repeat(129), 'with space', 'tab\there']) {
    const answer = await http(port, 'POST', '/pub/pub:ids', { body: '1', token: tok, headers: { 'idempotency-key': key } })
    t.match(answer, { status: 400, body: { code: 4003 } }, `Idempotency-Key ${JSON.stringify(key.slice(0, 20))}: 4003`)
  }
  const ok = await http(port, 'POST', '/pub/pub:ids', { body: '"max"', token: tok, headers: { 'idempotency-key': 'k'.repeat(128) } })
  t.equal(ok.status, 200, 'a 128-character key is taken')
  const again = await http(port, 'POST', '/pub/pub:ids', { body: '"max"', token: tok, headers: { 'idempotency-key': 'k'.repeat(128) } })
  t.same(again.body, ok.body, 'and deduplicated')
  const n1 = await c.call({ op: 'pub', ch: 'pub:ids', data: 'n' })
  const n2 = await c.call({ op: 'pub', ch: 'pub:ids', data: 'n' })
  t.equal(n2['seq'], (n1['seq'] as number) + 1, 'numeric ids only correlate: two messages')
  c.send({ op: 'pub', ch: 'pub:ids', data: 'ws', id: 'same-key' })
  const wsAck = await c.next((f) => f.op === 'ack' && f['id'] === 'same-key', 'ack of the string id')
  const byHttp = await http(port, 'POST', '/pub/pub:ids', { body: '"other"', token: tok, headers: { 'idempotency-key': 'same-key' } })
  t.equal(byHttp.body['seq'], wsAck['seq'], 'one id space per channel, whatever the path: the HTTP retry of a WebSocket publish gets its seq')
  await waitFor('messages delivered', () => c.messages('pub:ids').length >= 4 || undefined)
  await c.call({ op: 'ping' })
  t.same(c.messages('pub:ids').map((f) => f['data']), ['max', 'n', 'n', 'ws'], 'each stored and delivered once')
})
