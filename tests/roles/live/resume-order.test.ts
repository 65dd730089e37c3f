// Issue #16: a resume must never show a connection the same seq twice, and a stream restarted at a new home must
// say so (the unasked sub-ok with recovered:false) before the first message of the new sequence. Both races need
// a home's answer and the next event to reach the subscribing node in one read; the tests force that with SIGSTOP
// (a paused parent keeps what was sent to it in its socket buffer) instead of hoping for the timing.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, http, token, type Frame } from '../../helpers/live.js'

/** Long enough for a paused node not to be suspected by the seed while the test holds it. */
const seedFlags = (metaPort: number) => ({ seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '10s' })
/**
 * `--live-replicas 1` on purpose: the second test needs a home change that restarts the stream (a new sequence and a
 * reset), which is what a home's stop does without a backup; with the default 2 its backup goes on with the same sequence.
 */
const liveFlags = (metaPort: number) => ({ ...seedFlags(metaPort), 'live-replicas': 1, children: 1, ...NODE_HOMES })
/** What the paused receiver's peer needs to have written its frames (not a measured threshold: a sequencing pause). */
const FORWARD_MS = 500

const metaPort = await freePort()
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags(metaPort), 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags(metaPort), 'node-id': 'live-a' })
const h1 = await startNode(t, 'live', { ...liveFlags(metaPort), 'node-id': 'live-h1' })
const h2 = await startNode(t, 'live', { ...liveFlags(metaPort), 'node-id': 'live-h2' })
t.teardown(async () => {
  for (const node of [a, h1, h2]) node.proc.kill('SIGCONT')
  await Promise.all([a.stop(), h1.stop(), h2.stop()])
  await seed.stop()
})
for (const node of [a, h1, h2]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 3 && l['listed'] === true, 'all three listed', 20_000)

const all = new Rendezvous([{ id: 'live-a' }, { id: 'live-h1' }, { id: 'live-h2' }])
const withoutH1 = new Rendezvous([{ id: 'live-a' }, { id: 'live-h2' }])
const names = Array.from({ length: 200 }, (_, i) => `room:${i}`)
/** Homed on h2 whatever h1 does: a subscription to it keeps a's link to h2 up. */
const onH2 = names.find((ch) => all.pick(ch)!.id === 'live-h2')!
/** Homed on h1, and on h2 once h1 leaves. */
const moves = names.find((ch) => all.pick(ch)!.id === 'live-h1' && withoutH1.pick(ch)!.id === 'live-h2')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

/** Pauses `receiver` while `sender` has written to it, so that it reads everything sent in one go once resumed. */
async function pause(node: StartedNode): Promise<void> {
  node.proc.kill('SIGSTOP')
  await sleep(FORWARD_MS)
}

async function history(node: StartedNode, ch: string): Promise<Frame[]> {
  const answer = await http(node.port, 'GET', `/history/${encodeURIComponent(ch)}`, { token: tok })
  return answer.body['messages'] as Frame[]
}

const seqs = (frames: Frame[], ch: string): number[] => frames.filter((f) => f.op === 'msg' && f['ch'] === ch).map((f) => f['seq'] as number)

t.test('a resume whose answer and the next message reach the node together: that message once', async (t) => {
  const x = await connectLive(t, a.port, { token: tok })
  const y = await connectLive(t, a.port, { token: tok })
  // x keeps a's only child subscribed, so the node relays the channel's messages to it.
  const subX = await x.call({ op: 'sub', ch: onH2 })
  const s = subX['seq'] as number
  await pause(h2)
  y.send({ op: 'sub', ch: onH2, since: s, id: 'resume' })
  y.send({ op: 'pub', ch: onH2, data: 'during', id: 'p-during' })
  await sleep(FORWARD_MS)
  // a forwarded the sub and then the pub to h2; h2 answers the one and sends the other's event while a is paused.
  await pause(a)
  h2.proc.kill('SIGCONT')
  await waitFor('h2 stored the message', async () => (await history(h2, onH2)).some((m) => m['data'] === 'during'))
  a.proc.kill('SIGCONT')
  const subY = await y.next((f) => f['id'] === 'resume', 'the resume answer')
  t.equal(subY['recovered'], true)
  const ack = await y.next((f) => f['id'] === 'p-during', 'the publish ack')
  await y.call({ op: 'pub', ch: onH2, data: 'after' })
  for (const c of [x, y]) await c.next((f) => f.op === 'msg' && f['data'] === 'after', 'the later message')
  const during = ack['seq'] as number
  t.equal(subY['seq'], during, 'the sub-ok names the last missed message it brings')
  t.same(seqs(y.frames, onH2), [during, during + 1], 'the resumed connection: each message once, in order')
  t.same(seqs(x.frames, onH2), [during, during + 1], 'the connection already subscribed: each message once, in order')
})

t.test('a home change whose answer and the new home\'s first message reach the node together: the gap first', async (t) => {
  const x = await connectLive(t, a.port, { token: tok })
  await x.call({ op: 'sub', ch: onH2 })
  await x.call({ op: 'sub', ch: moves })
  const before = await x.call({ op: 'pub', ch: moves, data: 'before' })
  await x.next((f) => f.op === 'msg' && f['data'] === 'before', 'the message before the move')
  await pause(h2)
  const mark = a.logs.length
  h1.proc.kill('SIGTERM')
  await waitFor('a applied the table without h1', () => a.logs.slice(mark).find((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2), 20_000)
  // a asked h2 to renew the channel (since: the last message it relayed); the publish follows on the same link.
  x.send({ op: 'pub', ch: moves, data: 'moved', id: 'p-moved' })
  await sleep(FORWARD_MS)
  await pause(a)
  h2.proc.kill('SIGCONT')
  await waitFor('h2 stored the message', async () => (await history(h2, moves)).some((m) => m['data'] === 'moved'))
  a.proc.kill('SIGCONT')
  await x.next((f) => f.op === 'msg' && f['data'] === 'moved', 'the first message at the new home')
  const frames = x.frames.filter((f) => f['ch'] === moves && (f.op === 'msg' || (f.op === 'sub-ok' && f['id'] === undefined)))
  const beforeAt = frames.findIndex((f) => f.op === 'msg' && f['data'] === 'before')
  t.same(frames.slice(beforeAt).map((f) => f.op), ['msg', 'sub-ok', 'msg'], 'the old message, the reset, then the new home\'s message')
  const reset = frames[beforeAt + 1]!
  t.equal(reset['recovered'], false)
  t.match(reset['gap'], { from: (before['seq'] as number) + 1, cause: 'lost' }, 'the reset says what is gone and why')
  t.ok((frames[beforeAt + 2]!['seq'] as number) > (reset['seq'] as number), 'the new home\'s message comes after the sequence the reset announced')
})
