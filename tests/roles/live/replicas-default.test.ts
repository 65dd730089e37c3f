// Issue #16, --live-replicas 2 by default (no flag given): a Live node alone in its region has no backup and
// acknowledges alone (nothing sent to a backup); when a second node joins, the channels that existed before it are
// replicated (the first node's own ones sent to it, the ones it becomes the home of filled from the first), so the
// death of the first node loses nothing of them: a resume at the second recovers every message, same sequence.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame, type LiveClient } from '../../helpers/live.js'
import { scrape } from '../../helpers/prom-text.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const liveFlags = { ...seedFlags, children: 1, ...NODE_HOMES }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const nodes: StartedNode[] = [a]
t.teardown(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  await seed.stop()
})
const listed = (n: number) => (l: Record<string, unknown>) => l['msg'] === 'live: routing table applied' && l['nodes'] === n && l['listed'] === true
await a.waitForLog(listed(1), 'a listed alone', 20_000)

const both = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }])
const names = Array.from({ length: 200 }, (_, i) => `room:${i}`)
const staysOnA = names.find((ch) => both.pick(ch)!.id === 'live-a')!
const movesToB = names.find((ch) => both.pick(ch)!.id === 'live-b')!
const tok = token({ sub: ['room:*'], pub: ['room:*'] })
const replicated = async (node: StartedNode): Promise<number> => (await scrape(node.metricsPort)).value('espra_live_replicated_messages', { process: 'parent' })

async function publish(client: LiveClient, ch: string, id: string): Promise<Frame> {
  client.send({ op: 'pub', ch, data: id, id })
  const answer = await client.next((f) => f['id'] === id, `the answer to ${id}`, 20_000)
  if (answer.op !== 'ack') throw new Error(`${id}: ${JSON.stringify(answer)}`)
  return answer
}

t.test('alone, then joined: the default replicates once there is a second node', async (t) => {
  const pub = await connectLive(t, a.port, { token: tok })
  const start = new Map<string, number>()
  for (const ch of [staysOnA, movesToB]) start.set(ch, (await pub.call({ op: 'sub', ch }))['seq'] as number)
  for (const ch of [staysOnA, movesToB]) for (let i = 0; i < 5; i++) await publish(pub, ch, `${ch}-alone-${i}`)
  t.equal(await replicated(a), 0, 'alone: every publish acknowledged with no backup (none sent to one)')
  t.notOk(a.logs.some((l) => /took a channel over/.test(l.msg)), 'alone: nothing to take over from anyone')

  const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
  nodes.push(b)
  for (const node of [a, b]) await node.waitForLog(listed(2), 'both listed', 20_000)
  for (const ch of [staysOnA, movesToB]) for (let i = 0; i < 5; i++) await publish(pub, ch, `${ch}-joined-${i}`)
  t.ok(await replicated(a) > 0, 'a, the home of a channel, had its publishes acknowledged by its backup b: replicas 2 without the flag')

  a.proc.kill('SIGKILL')
  for (const pid of a.childPids()) process.kill(pid, 'SIGKILL')
  await b.waitForLog(listed(1), 'b applied the table without a', 20_000)
  const onB = await connectLive(t, b.port, { token: tok })
  for (const ch of [staysOnA, movesToB]) {
    const ok = await onB.call({ op: 'sub', ch, since: start.get(ch) })
    t.equal(ok['recovered'], true, `${ch} (home ${both.pick(ch)!.id}): recovered after a's death, history from before b joined included`)
    await waitFor(`${ch}: 10 messages`, () => onB.messages(ch).length >= 10, 20_000)
    t.same(onB.messages(ch).map((f) => f['seq']), Array.from({ length: 10 }, (_, i) => start.get(ch)! + 1 + i), `${ch}: the same sequence, each message once`)
    t.same(onB.messages(ch).map((f) => f['data']), [0, 1, 2, 3, 4].map((i) => `${ch}-alone-${i}`).concat([0, 1, 2, 3, 4].map((i) => `${ch}-joined-${i}`)), `${ch}: every acknowledged message`)
  }
})
