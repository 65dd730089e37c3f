// Issue #16, --live-replicas 2 (the default): a channel's home and backup killed at once (kill -9) while messages
// are published. What both held is gone: a subscriber on a surviving node (not the new home) gets the reset (sub-ok, recovered:
// false) with a gap of cause `lost` that is not empty (from the first message it missed up to the new home's
// sequence), before any message of the new sequence, and then every message after the gap, in order,
// once; a resume from before the loss gets the same kind of gap.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
// A killed node leaves the table at once (its link closed); the timeout only must outlast a's pause below.
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '10s' }
const liveFlags = { ...seedFlags, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const nodes: StartedNode[] = []
for (const id of ['live-a', 'live-h1', 'live-h2', 'live-d']) nodes.push(await startNode(t, 'live', { ...liveFlags, 'node-id': id }))
const [a, h1, h2, d] = nodes as [StartedNode, StartedNode, StartedNode, StartedNode]
t.teardown(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  await seed.stop()
})
const listed = (n: number) => (l: Record<string, unknown>) => l['msg'] === 'live: routing table applied' && l['nodes'] === n && l['listed'] === true
for (const node of nodes) await node.waitForLog(listed(4), 'all four listed', 20_000)

const all = new Rendezvous([{ id: 'live-a' }, { id: 'live-h1' }, { id: 'live-h2' }, { id: 'live-d' }])
/** Held by h1 and h2 (home and backup), then by d: a only relays them, before and after. */
const [viaA, viaD] = Array.from({ length: 2000 }, (_, i) => `room:${i}`).filter((c) => all.rank(c).map((n) => n.id).join() === 'live-h1,live-h2,live-d,live-a')
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

/** Publishes on the channel until stopped, each with a publish id, an answer awaited before the next. */
function publishLoop(pub: LiveClient, ch: string): { acked: Frame[]; stop(): Promise<void> } {
  let n = 0
  let stopped = false
  const acked: Frame[] = []
  const loop = (async () => {
    while (!stopped) {
      const id = `${ch}-${n++}`
      pub.send({ op: 'pub', ch, data: id, id })
      const answer = await pub.next((f) => f['id'] === id, `the answer to ${id}`, 20_000)
      if (answer.op === 'ack') acked.push(answer)
      else await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  return { acked, stop: async () => { stopped = true; await loop } }
}

// One channel published through the relaying node a (its renewal reaches the new home before any new publish), one
// through d, the new home. a's parent is paused (SIGSTOP) across the loss until d has acknowledged publishes of
// its new sequence, so a's renewal finds them held after the gap: they follow the reset (they were skipped silently,
// the reset put at d's last sequence).
t.test('home and backup killed at once under publishes: an exact lost gap, then every message after it', async (t) => {
  const sub = await connectLive(t, a.port, { token: tok })
  const start = new Map<string, number>()
  for (const ch of [viaA!, viaD!]) start.set(ch, (await sub.call({ op: 'sub', ch }))['seq'] as number)
  const loops = new Map([[viaA!, publishLoop(await connectLive(t, a.port, { token: tok }), viaA!)], [viaD!, publishLoop(await connectLive(t, d.port, { token: tok }), viaD!)]])
  await waitFor('20 messages of each before the kill', () => [viaA!, viaD!].every((ch) => sub.messages(ch).length >= 20), 20_000)
  a.proc.kill('SIGSTOP')
  t.teardown(() => a.proc.kill('SIGCONT'))
  for (const node of [h1, h2]) {
    node.proc.kill('SIGKILL')
    for (const pid of node.childPids()) process.kill(pid, 'SIGKILL')
  }
  await d.waitForLog(listed(2), 'd applied the table without h1 and h2', 20_000)
  const ackedBefore = loops.get(viaD!)!.acked.length
  await waitFor('d acknowledged 5 publishes as the new home while a is paused', () => loops.get(viaD!)!.acked.length >= ackedBefore + 5, 20_000)
  a.proc.kill('SIGCONT')
  await a.waitForLog(listed(2), 'a applied the table without h1 and h2', 20_000)
  for (const ch of [viaA!, viaD!]) {
    const reset = await sub.next((f) => f.op === 'sub-ok' && f['ch'] === ch && f['id'] === undefined, `the reset of ${ch}`, 20_000)
    const resetAt = sub.frames.indexOf(reset)
    const msgs = (frames: Frame[]) => frames.filter((f) => f.op === 'msg' && f['ch'] === ch).map((f) => f['seq'] as number)
    await waitFor(`${ch}: 10 messages after the reset`, () => msgs(sub.frames.slice(resetAt)).length >= 10, 20_000)
    const before = msgs(sub.frames.slice(0, resetAt))
    const after = msgs(sub.frames.slice(resetAt))
    const gap = reset['gap'] as { from: number; to: number; cause: string }
    t.comment(`${ch}: reset seq ${reset['seq']}, gap ${JSON.stringify(gap)}, first seqs after it ${after.slice(0, 3).join(', ')}`)
    t.equal(reset['recovered'], false, `${ch}: the reset says the stream restarted`)
    t.match(gap, { from: before.at(-1)! + 1, cause: 'lost' }, `${ch}: the gap starts after the last message delivered, cause lost`)
    t.ok(gap.to >= gap.from, `${ch}: the gap is not empty (${gap.from}..${gap.to})`)
    t.same(before, Array.from({ length: before.length }, (_, i) => start.get(ch)! + 1 + i), `${ch}: before the loss, one sequence, each message once`)
    // docs/live-protocol.md, "Gaps": from..to are gone, and the messages after `to` up to `seq` follow as usual.
    t.same(after, Array.from({ length: after.length }, (_, i) => gap.to + 1 + i), `${ch}: after the reset, every message after the gap, in order, each once`)
  }
  for (const [ch, loop] of loops) {
    await loop.stop()
    t.ok(loop.acked.length > 20, `${ch}: ${loop.acked.length} publishes acknowledged`)
  }

  const late = await connectLive(t, a.port, { token: tok })
  const resumed = await late.call({ op: 'sub', ch: viaD!, since: start.get(viaD!)! + 5 })
  t.equal(resumed['recovered'], false, 'a resume from before the loss: not recovered')
  const lateGap = resumed['gap'] as { from: number; to: number; cause: string }
  t.match(lateGap, { from: start.get(viaD!)! + 6, cause: 'lost' }, 'its gap starts at its first missing message, cause lost')
  t.ok(lateGap.to >= lateGap.from, `and is not empty (${lateGap.from}..${lateGap.to})`)
})
