// Two real Live nodes and a seed: every subscriber gets every message of a channel in order, exactly once,
// whichever node it is on and whichever node the publish came through; after kill -9 of a node, a reconnect
// recovers completely or says recovered:false.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { NODE_HOMES, checkOrderedFanout, connectLive, token } from '../../helpers/live.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
// --live-replicas 1 on purpose: the kill -9 test pins what a home's death does without a backup (a new sequence and
// a `lost` gap); with the default 2 the survivor holds the history (tests/roles/live/replicas.test.ts).
const liveFlags = { ...seedFlags, 'live-replicas': 1, children: 2, ...NODE_HOMES }
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
t.teardown(async () => {
  await Promise.all([a.stop(), b.stop()])
  await seed.stop()
})
for (const node of [a, b]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true, 'both nodes listed')

const homes = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }])
const CHANNELS = Array.from({ length: 12 }, (_, i) => `room:${i}`)
const tok = token({ sub: ['room:*'], pub: ['room:*'] })
t.ok(CHANNELS.some((ch) => homes.pick(ch)!.id === 'live-a') && CHANNELS.some((ch) => homes.pick(ch)!.id === 'live-b'), 'channels are homed on both nodes')

t.test('ordering and exactly-once across two nodes, publishes through both', async (t) => {
  const clients = [await connectLive(t, a.port, { token: tok }), await connectLive(t, b.port, { token: tok }), await connectLive(t, b.port, { token: tok, msgpack: true })]
  await checkOrderedFanout(t, clients, CHANNELS, a.port, tok, 20)
  for (const c of clients) c.close()
})

t.test('kill -9 of a Live node: reconnects recover completely or say recovered:false; the survivor homes everything', async (t) => {
  const onA = await connectLive(t, a.port, { token: tok })
  const onB = await connectLive(t, b.port, { token: tok })
  const last = new Map<string, number>()
  for (const ch of CHANNELS) {
    await onA.call({ op: 'sub', ch })
    const ok = await onB.call({ op: 'sub', ch })
    const ack = await onA.call({ op: 'pub', ch, data: 'before' })
    t.equal(ack.op, 'ack')
    last.set(ch, ack['seq'] as number)
    t.ok(ok['seq'] as number < (ack['seq'] as number))
  }
  await waitFor('onB saw every message', () => CHANNELS.every((ch) => onB.messages(ch).length === 1))
  b.proc.kill('SIGKILL')
  for (const pid of b.childPids()) process.kill(pid, 'SIGKILL')
  await onB.closed
  await a.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 1, 'a alone in the table', 20_000)
  const movedAway = CHANNELS.filter((ch) => homes.pick(ch)!.id === 'live-b')
  for (const ch of movedAway) {
    const reset = await onA.next((f) => f.op === 'sub-ok' && f['ch'] === ch && f['recovered'] === false && f['id'] === undefined, `reset of ${ch} on the survivor`)
    t.match(reset['gap'], { from: last.get(ch)! + 1, cause: 'lost' }, `${ch}: the reset says from where messages are lost, and why`)
    t.equal((reset['gap'] as { to: number }).to, (reset['seq'] as number), `${ch}: up to the new home's first sequence`)
  }
  for (const ch of CHANNELS) {
    const ack = await onA.call({ op: 'pub', ch, data: 'after' })
    t.equal(ack.op, 'ack', `${ch} publishes after the death`)
  }
  const again = await connectLive(t, a.port, { token: tok })
  for (const ch of CHANNELS) {
    const ok = await again.call({ op: 'sub', ch, since: last.get(ch) })
    if (homes.pick(ch)!.id === 'live-a') {
      t.equal(ok['recovered'], true, `${ch} (home survived): recovered`)
      await again.next((f) => f.op === 'msg' && f['ch'] === ch && f['data'] === 'after', `${ch} missed message`)
      t.same(again.messages(ch).map((f) => f['data']), ['after'], `${ch}: exactly what was missed`)
    } else {
      t.equal(ok['recovered'], false, `${ch} (home died): recovered:false, never a silent gap`)
      t.match(ok['gap'], { from: last.get(ch)! + 1, cause: 'lost' }, `${ch}: the gap starts after the last message seen, lost with its home`)
      await again.next((f) => f.op === 'msg' && f['ch'] === ch && f['data'] === 'after', `${ch}: the new home's message after the gap`)
      t.same(again.messages(ch).map((f) => f['seq']), [(ok['gap'] as { to: number }).to + 1], `${ch}: what the new home holds follows the gap, right after its end`)
    }
  }
})
