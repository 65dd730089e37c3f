// Issue #16, --live-replicas 2: a node whose renewal at a channel's new home failed must not let its subscribers'
// sequence jump. Seen in rolling restarts: a node joined as a channel's home, a relaying node's renewal there failed
// (the new home could not fill from its backup yet), nothing renewed it again, and the next subscription on the
// relaying node moved its position past what its earlier subscribers never got: they saw seq s, then s + k, with no
// `recovered: false` before it. Forced here with SIGSTOP: both holders of the channel are paused while its new home
// joins (the backup it must fill from, and the old backup that would hand it over), so the fill, and with it the
// renewal, fails; then they are resumed. The relaying node holds no copy: a holder hands its copy to the new home,
// and the renewal, waiting for that handover, could succeed before anything failed.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
// Long enough for a paused node not to be suspected by the seed while the test holds it.
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '30s' }
const liveFlags = { ...seedFlags, 'live-replicas': 2, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
const d = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-d' })
const nodes: StartedNode[] = [a, b, d]
t.teardown(async () => {
  for (const node of nodes) node.proc.kill('SIGCONT')
  await Promise.all(nodes.map((n) => n.stop()))
  await seed.stop()
})
const listed = (n: number) => (l: Record<string, unknown>) => l['msg'] === 'live: routing table applied' && l['nodes'] === n && l['listed'] === true
for (const node of nodes) await node.waitForLog(listed(3), 'all three listed', 20_000)

const four = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }, { id: 'live-c' }, { id: 'live-d' }])
/** Home c and backup b once c joins (home b, backup d before): a only relays it, before and after. */
const ch = Array.from({ length: 2000 }, (_, i) => `room:${i}`).find((n) => four.rank(n).map((x) => x.id).join() === 'live-c,live-b,live-d,live-a')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

async function publish(client: LiveClient, id: string): Promise<Frame> {
  client.send({ op: 'pub', ch, data: id, id })
  const answer = await client.next((f) => f['id'] === id, `the answer to ${id}`, 30_000)
  if (answer.op !== 'ack') throw new Error(`${id}: ${JSON.stringify(answer)}`)
  return answer
}

t.test('a renewal that failed at a new home is renewed again: the subscribers already there see every seq, or a gap', async (t) => {
  const first = await connectLive(t, a.port, { token: tok })
  const start = (await first.call({ op: 'sub', ch }))['seq'] as number
  const pubB = await connectLive(t, b.port, { token: tok })
  for (let i = 0; i < 5; i++) await publish(pubB, `before-${i}`)
  await waitFor('the first subscriber got the five', () => first.messages(ch).length === 5)

  // Both holders pause; c joins and becomes the home: a's renewal at c waits for c's fill from b, which fails.
  const markA = a.logs.length
  const holders = [b, d]
  for (const node of holders) node.proc.kill('SIGSTOP')
  let c: StartedNode
  try {
    c = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-c' })
    nodes.push(c)
    await a.waitForLog(listed(4), 'a applied the table with c', 20_000)
    await waitFor('a gave up a renewal at c', () => a.logs.slice(markA).find((l) => /renew a channel/.test(l.msg)), 30_000)
  } finally {
    for (const node of holders) node.proc.kill('SIGCONT')
  }
  await c.waitForLog(listed(4), 'c listed', 20_000)
  for (const node of holders) await node.waitForLog(listed(4), `${node === b ? 'b' : 'd'} applied the table with c`, 20_000)

  // Published at the home now (it fills from b and goes on with the same sequence), then someone new subscribes on a.
  const pubC = await connectLive(t, c.port, { token: tok })
  for (let i = 0; i < 3; i++) await publish(pubC, `during-${i}`)
  const second = await connectLive(t, a.port, { token: tok })
  await second.call({ op: 'sub', ch })
  const last = await publish(pubC, 'after')
  await waitFor('the first subscriber got the last message', () => first.messages(ch).some((f) => f['seq'] === last['seq']), 20_000)
  await sleep(200)

  const seqs = first.messages(ch).map((f) => f['seq'] as number)
  const resets = first.frames.filter((f) => f.op === 'sub-ok' && f['id'] === undefined)
  t.comment(`the first subscriber: seqs ${seqs.map((s) => s - start).join(' ')} (after ${start}); resets ${JSON.stringify(resets)}`)
  if (resets.length === 0) t.same(seqs, Array.from({ length: 9 }, (_, i) => start + 1 + i), 'every seq once, in order: the renewal was made again and recovered what it missed')
  else t.match(resets[0], { recovered: false, gap: { from: seqs[4]! + 1 } }, 'or the jump is reported, with its gap, before it')
  t.same(first.messages(ch).map((f) => f['data']), ['before-0', 'before-1', 'before-2', 'before-3', 'before-4', 'during-0', 'during-1', 'during-2', 'after'], 'nothing acknowledged was lost: the new home went on with the same sequence')
})
