// A subscription made while its channel is busy misses nothing: the messages published between the snapshot
// that answers `sub` (`seq`, and the missed ones with `since`) and the moment the client is subscribed reach it
// too. The answer and the next message often come in one read (of a peer's link, of the IPC channel), and the
// message is handled before the answer's continuation; the node and the child keep what arrived meanwhile.
// Checked on one node (the channel homed locally) and across two (homed on the other node).
import t, { type Test } from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, sse, token } from '../../helpers/live.js'

const FLAGS = { children: 1, ...NODE_HOMES, 'live-public': 'busy:*', 'live-history-size': 5000 }

/** Floods `ch` through `pubPort` while subscribers on `subPort` come and go; says which of them saw a gap. */
async function subscribeUnderFlood(t: Test, pubPort: number, subPort: number, ch: string): Promise<string[]> {
  const publisher = await connectLive(t, pubPort, { token: token({ pub: ['busy:*'] }) })
  let last = (await publisher.call({ op: 'pub', ch, data: 0 }))['seq'] as number
  let flooding = true
  // Publishes without waiting for each ack: about fifty in flight at any time.
  const flood = (async () => {
    let n = 1
    while (flooding) {
      for (let i = 0; i < 50; i++) publisher.send({ op: 'pub', ch, data: n++ })
      last = (await publisher.call({ op: 'pub', ch, data: n++ }))['seq'] as number
    }
  })()
  const gaps: string[] = []
  const check = (label: string, since: number, until: number, seqs: number[]) => {
    const got = seqs.filter((s) => s <= until)
    if (got.length !== until - since || got.some((s, i) => s !== since + 1 + i)) gaps.push(`${label}: since ${since}, got ${got.length} of ${until - since}`)
  }
  for (let round = 0; round < 30; round++) {
    const since = last
    const ws = await connectLive(t, subPort)
    const ok = await ws.call({ op: 'sub', ch, since })
    t.equal(ok['recovered'], true, `round ${round}: since ${since} is in history`)
    const until = (ok['seq'] as number) + 200
    await ws.next((f) => f.op === 'msg' && (f['seq'] as number) >= until, `round ${round}: messages up to ${until}`, 20_000)
    check(`ws round ${round}`, since, until, ws.messages(ch).map((f) => f['seq'] as number))
    ws.close()
    if (round % 3 !== 0) continue
    const from = last
    const stream = await sse(t, subPort, `/sse?ch=${ch}`, `${ch}=${from}`)
    const to = ((await stream.next((e) => e.data.op === 'sub-ok', 'sse subscribed')).data['seq'] as number) + 200
    await stream.next((e) => e.data.op === 'msg' && (e.data['seq'] as number) >= to, `sse round ${round}: messages up to ${to}`)
    check(`sse round ${round}`, from, to, stream.events.filter((e) => e.data.op === 'msg').map((e) => e.data['seq'] as number))
    stream.close()
  }
  flooding = false
  await flood
  publisher.close()
  return gaps
}

t.test('one node: WebSocket and SSE subscriptions on a flooded channel get every message, in order', async (t) => {
  const node = await startNode(t, 'live', FLAGS)
  t.teardown(() => node.stop())
  t.same(await subscribeUnderFlood(t, node.port, node.port, 'busy:1'), [], 'no subscription missed or repeated a message')
})

t.test('two nodes: subscriptions on the node that is not the channel\'s home get every message, in order', async (t) => {
  const metaPort = await freePort()
  const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
  const a = await startNode(t, 'live', { ...FLAGS, ...seedFlags, 'node-id': 'live-a' })
  const b = await startNode(t, 'live', { ...FLAGS, ...seedFlags, 'node-id': 'live-b' })
  t.teardown(async () => {
    await Promise.all([a.stop(), b.stop()])
    await seed.stop()
  })
  for (const node of [a, b]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true, 'both nodes listed')
  const homes = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }])
  const ch = Array.from({ length: 20 }, (_, i) => `busy:${i}`).find((c) => homes.pick(c)!.id === 'live-a')!
  t.same(await subscribeUnderFlood(t, a.port, b.port, ch), [], 'no subscription on live-b missed or repeated a message')
})
