// The default Live setup (--live-homes children, --live-replicas 2): two real Live nodes of two children each and a
// seed. kill -9 of a whole node (its parent and both children) while publishes go on to channels homed on its
// children: each channel's backup is a child of the other node (never a sibling, which dies with the machine), so it
// goes on with the same sequence, every acknowledged message reaches the subscribers in order, once, and no one is reset.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { checkStream, childPeersOf, connectLive, publishUntil, token, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
// No --live-homes and no --live-replicas: what an operator gets.
const liveFlags = { ...seedFlags, children: 2 }
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
t.teardown(async () => {
  await Promise.all([a.stop(), b.stop()])
  await seed.stop()
})
await waitFor('two peers per node', () => childPeersOf(a).length === 2 && childPeersOf(b).length === 2, 20_000)
for (const node of [a, b]) {
  await waitFor('every child applied a table of four peers', () => new Set(node.logs.filter((l) => l.msg === 'live: routing table applied' && l['peers'] === 4 && l['listed'] === true).map((l) => l.pid)).size === 2, 20_000)
}

const homes = new Rendezvous([...childPeersOf(a), ...childPeersOf(b)].map((id) => ({ id })))
// One channel homed on each of b's children.
const names = Array.from({ length: 2000 }, (_, i) => `room:${i}`)
const CHANNELS = childPeersOf(b).map((peer) => names.find((ch) => homes.pick(ch)!.id === peer)!)
const tok = token({ sub: ['room:*'], pub: ['room:*'] })
const seqs = (client: LiveClient, ch: string): number[] => client.messages(ch).map((f) => f['seq'] as number)

t.test('kill -9 of a node under publishes: the backups on the other node go on with the same sequence; nothing acknowledged is lost', async (t) => {
  const sub = await connectLive(t, a.port, { token: tok })
  const pub = await connectLive(t, a.port, { token: tok })
  const start = new Map<string, number>()
  for (const ch of CHANNELS) start.set(ch, (await sub.call({ op: 'sub', ch }))['seq'] as number)
  let kill!: () => void
  const killed = new Promise<void>((resolve) => (kill = resolve))
  const stop = (async () => {
    await killed
    await a.waitForLog((l) => l.msg === 'live: routing table applied' && l['peers'] === 2, 'a\'s children applied the table without b', 20_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
  })()
  const publishing = CHANNELS.map((ch, i) => publishUntil(pub, ch, `k${i}`, stop))
  await waitFor('publishes acknowledged', () => pub.frames.filter((f) => f.op === 'ack').length >= 100, 20_000)
  b.proc.kill('SIGKILL')
  for (const pid of b.childPids()) process.kill(pid, 'SIGKILL')
  kill()
  const answers = await Promise.all(publishing)
  for (const [i, ch] of CHANNELS.entries()) {
    const all = [...answers[i]!.values()]
    const acked = all.filter((f) => f.op === 'ack')
    const failed = all.filter((f) => f.op === 'err')
    t.ok(acked.length > 20, `${ch}: publishes acknowledged (${acked.length}; ${failed.length} refused around the kill)`)
    t.ok(failed.every((f) => f['code'] === 5030 || f['code'] === 5031), `${ch}: a publish refused around the kill is refused as retryable`)
    const last = Math.max(...acked.map((f) => f['seq'] as number))
    await waitFor(`${ch}: the subscriber got the last acknowledged message`, () => seqs(sub, ch).includes(last), 20_000)
    t.equal(seqs(sub, ch)[0], start.get(ch)! + 1, `${ch}: the stream starts right after the subscription`)
    checkStream(t, sub.messages(ch), acked, `${ch} on a`)
  }
  t.notOk(sub.frames.some((f) => f.op === 'sub-ok' && f['id'] === undefined), 'no reset: no stream was restarted')

  const again = await connectLive(t, a.port, { token: tok })
  for (const ch of CHANNELS) {
    const resumed = await again.call({ op: 'sub', ch, since: start.get(ch) })
    t.equal(resumed['recovered'], true, `${ch}: a resume from before the kill is recovered`)
    await waitFor(`${ch}: the resumed stream`, () => seqs(again, ch).length >= seqs(sub, ch).length, 20_000)
    t.same(again.messages(ch).map((f) => [f['seq'], f['data']]), sub.messages(ch).map((f) => [f['seq'], f['data']]), `${ch}: the same messages at the same seqs`)
    const after = await pub.call({ op: 'pub', ch, data: 'after' })
    t.equal(after['seq'], (resumed['seq'] as number) + 1, `${ch}: the sequence goes on at its new home`)
  }
})
