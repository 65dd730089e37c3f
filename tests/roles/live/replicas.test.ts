// Issue #16, replicated history (--live-replicas 2): a channel's home and its backup both hold every acknowledged
// message. kill -9 of the home with publishes up to that instant: the backup takes over with the same sequence and
// every acknowledged message reaches the subscribers in order, once, recovered. A home stopped (SIGSTOP) long enough
// to be taken out of the table and then resumed acknowledges no publish as the home it no longer is: no forked sequence.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { checkStream, connectLive, NODE_HOMES, publishUntil, token, type Frame, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const liveFlags = { ...seedFlags, 'live-replicas': 2, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
const c = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-c' })
t.teardown(async () => {
  for (const node of [a, b, c]) node.proc.kill('SIGCONT')
  await Promise.all([a.stop(), b.stop(), c.stop()])
  await seed.stop()
})
for (const node of [a, b, c]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 3 && l['listed'] === true, 'all three listed', 20_000)

const all = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }, { id: 'live-c' }])
const names = Array.from({ length: 500 }, (_, i) => `room:${i}`)
/** Home b, backup c: a holds nothing of it. */
const killed = names.find((ch) => all.rank(ch).map((n) => n.id).join() === 'live-b,live-c,live-a')!
/** Home c, backup a (b last): the channel of the stopped home once b is gone. */
const stopped = names.find((ch) => all.rank(ch).map((n) => n.id).join() === 'live-c,live-a,live-b')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

const seqs = (client: LiveClient, ch: string): number[] => client.messages(ch).map((f) => f['seq'] as number)

/** A publish whose data is its (string) publish id, answered by that id. */
async function publish(client: LiveClient, ch: string, id: string): Promise<Frame> {
  client.send({ op: 'pub', ch, data: id, id })
  return client.next((f) => f['id'] === id, `the answer to ${id}`, 20_000)
}

t.test('kill -9 of the home under publishes: the backup goes on with the same sequence; nothing acknowledged is lost', async (t) => {
  const sub = await connectLive(t, a.port, { token: tok })
  const pub = await connectLive(t, a.port, { token: tok })
  const ok = await sub.call({ op: 'sub', ch: killed })
  const start = ok['seq'] as number
  let kill!: () => void
  const killedAt = new Promise<void>((resolve) => (kill = resolve))
  const stop = (async () => {
    await killedAt
    await a.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2, 'a applied the table without b', 20_000)
    await sleep(500)
  })()
  const publishing = publishUntil(pub, killed, 'k', stop)
  await waitFor('publishes acknowledged', () => pub.frames.filter((f) => f.op === 'ack').length >= 100, 20_000)
  b.proc.kill('SIGKILL')
  for (const pid of b.childPids()) process.kill(pid, 'SIGKILL')
  kill()
  const answers = await publishing
  const acked = [...answers.values()].filter((f) => f.op === 'ack')
  const failed = [...answers.values()].filter((f) => f.op === 'err')
  t.ok(acked.length > 100, `publishes acknowledged (${acked.length}; ${failed.length} refused around the kill)`)
  t.ok(failed.every((f) => f['code'] === 5030 || f['code'] === 5031), 'a publish refused around the kill is refused as retryable')
  const last = Math.max(...acked.map((f) => f['seq'] as number))
  await waitFor('the subscriber got the last acknowledged message', () => seqs(sub, killed).includes(last), 20_000)
  t.notOk(sub.frames.some((f) => f.op === 'sub-ok' && f['id'] === undefined), 'no reset: the stream was never restarted')
  t.equal(seqs(sub, killed)[0], start + 1, 'the stream starts right after the subscription')
  checkStream(t, sub.messages(killed), acked, 'the subscriber on a')
  // A client that reconnects to the new home with the first position recovers everything, with the same seqs.
  const again = await connectLive(t, c.port, { token: tok })
  const resumed = await again.call({ op: 'sub', ch: killed, since: start })
  t.equal(resumed['recovered'], true, 'a resume at the new home is recovered')
  await waitFor('the resumed stream', () => seqs(again, killed).length >= seqs(sub, killed).length, 20_000)
  t.same(again.messages(killed).slice(0, sub.messages(killed).length).map((f) => [f['seq'], f['data']]), sub.messages(killed).map((f) => [f['seq'], f['data']]), 'the same messages at the same seqs')
  const after = await pub.call({ op: 'pub', ch: killed, data: 'after' })
  t.equal(after['seq'], (resumed['seq'] as number) + 1, 'the sequence goes on at the new home')
})

t.test('a home stopped for 10 s and resumed acknowledges no publish for the channel it lost: no forked sequence', async (t) => {
  const onA = await connectLive(t, a.port, { token: tok })
  const onC = await connectLive(t, c.port, { token: tok })
  await onA.call({ op: 'sub', ch: stopped })
  await onC.call({ op: 'sub', ch: stopped })
  const first = await publish(onC, stopped, 'before')
  t.equal(first.op, 'ack')
  await onA.next((f) => f.op === 'msg' && f['data'] === 'before', 'the message before the stop')
  const acked = [first]
  const mark = a.logs.length
  c.proc.kill('SIGSTOP')
  try {
    await waitFor('a applied the table without c', () => a.logs.slice(mark).find((l) => l.msg === 'live: routing table applied' && l['nodes'] === 1), 20_000)
    // a is the home now (it held the backup): publishes go on at the same sequence.
    const during = await publish(onA, stopped, 'during')
    t.equal(during['seq'], (first['seq'] as number) + 1, 'the backup goes on with the same sequence')
    // Sent to the stopped node: it reads them when it resumes, with the table that still names it the home.
    for (let i = 0; i < 5; i++) onC.send({ op: 'pub', ch: stopped, data: `stale-${i}`, id: `stale-${i}` })
    acked.push(during)
    await sleep(10_000 - 1000)
  } finally {
    c.proc.kill('SIGCONT')
  }
  const stale = await Promise.all(Array.from({ length: 5 }, (_, i) => onC.next((f) => f['id'] === `stale-${i}`, `the answer to stale-${i}`, 30_000)))
  const fenced = c.logs.some((l) => l.msg === 'live: a newer routing table gives this channel another home; forgetting it here')
  t.comment(`the resumed node ${fenced ? 'was refused by the new home (fenced) before' : 'applied the newer table before'} it handled the publishes sent to it`)
  t.comment(`the stopped node's publishes: ${stale.map((f) => (f.op === 'ack' ? 'ack' : `err ${f['code']}`)).join(', ')}`)
  acked.push(...stale.filter((f) => f.op === 'ack'), await publish(onA, stopped, 'after'))
  await onA.next((f) => f.op === 'msg' && f['data'] === 'after', 'the message after the resume')
  const ackedSeqs = acked.map((f) => f['seq'] as number)
  t.equal(new Set(ackedSeqs).size, ackedSeqs.length, 'no two acknowledged publishes share a seq')
  t.ok(stale.every((f) => f.op === 'ack' || f['code'] === 5030 || f['code'] === 5031), 'the stopped node\'s publishes are acknowledged at the real home or refused as retryable')
  checkStream(t, onA.messages(stopped), acked, 'the subscriber on a')
  const history = onA.messages(stopped).map((f) => f['data'])
  t.same(history.slice(0, 2), ['before', 'during'], 'the stream on a: before, during, then the rest')
})
