// Issue #16, --live-replicas 2: a channel's home stopped with SIGTERM (no drain order first) under publishes. The seed
// takes the stopping node out of the table as soon as its health says draining, so the node applies the table
// without itself and hands its channels over before its children close their clients (not only in its last
// close(), after them); publishes sent meanwhile through another node are all acknowledged (an attempt answered
// with an error is sent again with its publish id, as a client does), and the subscriber gets every acknowledged
// message once, in one sequence.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame } from '../../helpers/live.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '3s' }
const liveFlags = { ...seedFlags, 'live-replicas': 2, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
const c = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-c' })
t.teardown(async () => {
  await Promise.all([a.stop(), b.stop(), c.stop()])
  await seed.stop()
})
for (const node of [a, b, c]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 3 && l['listed'] === true, 'all three listed', 20_000)

const all = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }, { id: 'live-c' }])
/** Home c (stopped), backup a (the publisher's node), b last (the subscriber's node). */
const ch = Array.from({ length: 500 }, (_, i) => `room:${i}`).find((name) => all.rank(name).map((n) => n.id).join() === 'live-c,live-a,live-b')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

t.test('SIGTERM of a channel\'s home under publishes: handed over before its clients close; every publish acknowledged, none lost', async (t) => {
  const sub = await connectLive(t, b.port, { token: tok })
  const pub = await connectLive(t, a.port, { token: tok })
  await sub.call({ op: 'sub', ch })
  let stopping = true
  const acked: Frame[] = []
  const failedAttempts: Frame[] = []
  const publishing = (async () => {
    const inFlight: Promise<void>[] = []
    for (let i = 0; stopping; i++) {
      const id = `s-${i}`
      inFlight.push((async () => {
        for (let attempt = 0; attempt < 20; attempt++) {
          pub.send({ op: 'pub', ch, data: id, id })
          const answer = await pub.next((f) => f['id'] === id && (f.op === 'ack' || f.op === 'err') && !failedAttempts.includes(f), `the answer to ${id}`, 30_000)
          if (answer.op === 'ack') return void acked.push(answer)
          failedAttempts.push(answer)
          await sleep(100)
        }
      })())
      await sleep(10)
    }
    await Promise.all(inFlight)
  })()
  await waitFor('publishes acknowledged', () => acked.length >= 100, 20_000)
  const exited = await c.stop()
  await sleep(1000)
  stopping = false
  await publishing
  t.equal(exited.code, 0, 'the home stopped cleanly')

  const lines = c.logs.map((l) => l.msg)
  const unlisted = c.logs.findIndex((l) => l.msg === 'live: routing table applied' && l['listed'] === false)
  const handed = c.logs.findIndex((l) => l.msg === 'live: handed a channel over to its new home' && l['ch'] === ch)
  const childrenDone = lines.indexOf('drained: exiting')
  t.ok(unlisted >= 0 && childrenDone > unlisted, `the stopping home applied the table without itself before its children closed their clients (${unlisted}, ${childrenDone})`)
  t.ok(handed >= 0 && handed < childrenDone, `and handed the channel over before that (${handed})`)

  const ids = new Set<string>()
  for (const f of acked) ids.add(f['id'] as string)
  const sent = new Set([...acked, ...failedAttempts].map((f) => f['id'] as string))
  t.same([...sent].filter((id) => !ids.has(id)), [], `every publish acknowledged (${acked.length}; attempts answered with an error and sent again: ${failedAttempts.length})`)
  const last = Math.max(...acked.map((f) => f['seq'] as number))
  await waitFor('the subscriber has every acknowledged message', () => sub.messages(ch).some((f) => (f['seq'] as number) >= last), 20_000)
  const got = sub.messages(ch).map((f) => f['seq'] as number)
  t.ok(got.every((s, i) => i === 0 || s === got[i - 1]! + 1), `one contiguous sequence, in order, no message twice (${got.length} messages)`)
  const bySeq = new Map(sub.messages(ch).map((f) => [f['seq'] as number, f['data']]))
  t.same(acked.filter((f) => bySeq.get(f['seq'] as number) !== f['id']), [], 'every acknowledged message delivered at its acknowledged seq')
})
