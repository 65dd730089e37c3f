// Issue #16, replicated history (--live-replicas 2): a Live node that joins takes over the channels it becomes the
// home of with their history and their sequence (it fills from its backup, their earlier home, first), and one it
// becomes the backup of is sent the whole state by the home: when that home dies, the joined node holds everything.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const liveFlags = { ...seedFlags, 'live-replicas': 2, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
const nodes: StartedNode[] = [a, b]
t.teardown(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  await seed.stop()
})
const listed = (n: number) => (l: Record<string, unknown>) => l['msg'] === 'live: routing table applied' && l['nodes'] === n && l['listed'] === true
for (const node of [a, b]) await node.waitForLog(listed(2), 'both listed', 20_000)

const after = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }, { id: 'live-d' }])
const names = Array.from({ length: 500 }, (_, i) => `room:${i}`)
/** The joining node becomes its home. */
const takenOver = names.find((ch) => after.rank(ch)[0]!.id === 'live-d')!
/** The joining node becomes its backup; its home is a or b. */
const backedUp = names.find((ch) => after.rank(ch)[1]!.id === 'live-d')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

async function publish(client: LiveClient, ch: string, id: string): Promise<Frame> {
  client.send({ op: 'pub', ch, data: id, id })
  const answer = await client.next((f) => f['id'] === id, `the answer to ${id}`, 20_000)
  if (answer.op !== 'ack') throw new Error(`${id}: ${JSON.stringify(answer)}`)
  return answer
}

const seqs = (frames: Frame[]): number[] => frames.map((f) => f['seq'] as number)

t.test('a joining node takes over the channels it homes and backs up with their history intact', async (t) => {
  const sub = await connectLive(t, a.port, { token: tok })
  const pub = await connectLive(t, b.port, { token: tok })
  const start = new Map<string, number>()
  for (const ch of [takenOver, backedUp]) start.set(ch, (await sub.call({ op: 'sub', ch }))['seq'] as number)
  const first = new Map<string, Frame>()
  for (const ch of [takenOver, backedUp]) {
    for (let i = 0; i < 20; i++) {
      const ack = await publish(pub, ch, `${ch}-before-${i}`)
      if (i === 0) first.set(ch, ack)
    }
  }
  const d = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-d' })
  nodes.push(d)
  for (const node of [a, b, d]) await node.waitForLog(listed(3), 'all three listed', 20_000)
  for (const ch of [takenOver, backedUp]) for (let i = 0; i < 10; i++) await publish(pub, ch, `${ch}-after-${i}`)
  for (const ch of [takenOver, backedUp]) {
    await waitFor(`${ch}: 30 messages on a`, () => sub.messages(ch).length >= 30, 20_000)
    t.same(seqs(sub.messages(ch)), Array.from({ length: 30 }, (_, i) => start.get(ch)! + 1 + i), `${ch}: one sequence across the join, each message once`)
  }
  t.notOk(sub.frames.some((f) => f.op === 'sub-ok' && f['id'] === undefined), 'no reset: no stream restarted')
  // Filled from its backup (the earlier home), or handed over by the earlier backup that is neither any more: whichever came first.
  t.ok(d.logs.some((l) => (l.msg === 'live: took a channel over with its history' || l.msg === 'live: took a channel over from a holder that left') && l['ch'] === takenOver), 'd took the channel it homes over with its history')

  const onD = await connectLive(t, d.port, { token: tok })
  const resumed = await onD.call({ op: 'sub', ch: takenOver, since: start.get(takenOver) })
  t.equal(resumed['recovered'], true, 'a resume at the new home recovers from before the join')
  await waitFor('the resumed messages', () => onD.messages(takenOver).length >= 30)
  t.same(onD.messages(takenOver).map((f) => f['data']), sub.messages(takenOver).map((f) => f['data']), 'the same messages')
  const retried = await publish(pub, takenOver, `${takenOver}-before-0`)
  t.equal(retried['seq'], first.get(takenOver)!['seq'], 'publish ids travelled with the history: a retry from before the join is answered with its first seq')

  // The home of the channel d backs up dies: d holds it all.
  const home = after.rank(backedUp)[0]!.id === 'live-a' ? a : b
  const survivor = home === a ? b : a
  home.proc.kill('SIGKILL')
  for (const pid of home.childPids()) process.kill(pid, 'SIGKILL')
  await d.waitForLog(listed(2), 'd applied the table without the dead home', 20_000)
  const onSurvivor = await connectLive(t, d.port, { token: tok })
  const again = await onSurvivor.call({ op: 'sub', ch: backedUp, since: start.get(backedUp) })
  t.equal(again['recovered'], true, `${backedUp}: the joined backup took over with the history (home ${home === a ? 'a' : 'b'} killed, ${survivor === a ? 'a' : 'b'} left)`)
  await waitFor('the recovered messages', () => onSurvivor.messages(backedUp).length >= 30)
  t.same(seqs(onSurvivor.messages(backedUp)), Array.from({ length: 30 }, (_, i) => start.get(backedUp)! + 1 + i), 'everything from before and after the join, at its seq')
  const next = await publish(onSurvivor, backedUp, 'after the kill')
  t.equal(next['seq'], start.get(backedUp)! + 31, 'the sequence goes on')

  // Both holders of a channel die at once: its history is gone, and a third node's subscriber is told exactly that.
  const e = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-e' })
  nodes.push(e)
  for (const node of [survivor, d, e]) await node.waitForLog(listed(3), 'three listed again', 20_000)
  const three = new Rendezvous([{ id: survivor === a ? 'live-a' : 'live-b' }, { id: 'live-d' }, { id: 'live-e' }])
  const doomed = names.find((ch) => three.rank(ch)[2]!.id === 'live-e')!
  const onE = await connectLive(t, e.port, { token: tok })
  await onE.call({ op: 'sub', ch: doomed })
  const last = await publish(onE, doomed, 'the last one')
  await onE.next((f) => f.op === 'msg' && f['seq'] === last['seq'], 'the last message')
  for (const node of [survivor, d]) {
    node.proc.kill('SIGKILL')
    for (const pid of node.childPids()) process.kill(pid, 'SIGKILL')
  }
  const reset = await onE.next((f) => f.op === 'sub-ok' && f['ch'] === doomed && f['id'] === undefined, 'the reset on e', 20_000)
  t.equal(reset['recovered'], false, 'home and backup died at once: not recovered')
  t.match(reset['gap'], { from: (last['seq'] as number) + 1, cause: 'lost' }, 'the gap starts after the last message seen, lost with both holders')
})
