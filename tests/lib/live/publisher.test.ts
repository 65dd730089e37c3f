// Other nodes publish through lib/live/publisher.ts to the channel's home over the internal link; subscribers get it.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import { createLivePublisher } from '../../../lib/live/publisher.js'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, SECRET, startNode, type StartedNode } from '../../helpers/cluster.js'
import { connectLive, token } from '../../helpers/live.js'

t.test('publish through the link reaches a WebSocket subscriber; bad channels and empty tables are coded', async (t) => {
  const node = await startNode(t, 'live', { children: 1, 'node-id': 'live-p' })
  t.teardown(() => node.stop())
  const c = await connectLive(t, node.port, { token: token({ sub: ['jobs:*'] }) })
  const ok = await c.call({ op: 'sub', ch: 'jobs:1' })
  const publisher = createLivePublisher({ secret: SECRET, id: 'fileserver-test', log: createLogger('silent', { role: 'test', node: 'test' }) })
  t.teardown(() => publisher.close())
  await t.rejects(publisher.publish('jobs:1', 1), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 5030 } }, 'no routing table yet')
  publisher.setRouting({ region: 'us-1', version: 1, nodes: [{ id: 'live-p', address: '127.0.0.1', port: node.port }] })
  const answer = await publisher.publish('jobs:1', { progress: 50 })
  t.equal(answer.seq, (ok['seq'] as number) + 1)
  t.match(await c.next((f) => f.op === 'msg', 'published message'), { ch: 'jobs:1', seq: answer.seq, data: { progress: 50 } })
  await t.rejects(publisher.publish('bad name', 1), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 4002 } }, 'bad channel')
  const keyed = await publisher.publish('jobs:1', { step: 'done' }, 'job-1-done')
  t.same(await publisher.publish('jobs:1', { step: 'done' }, 'job-1-done'), keyed, 'a retry with the same id (ctx.publish {id}) answers the first seq')
  await t.rejects(publisher.publish('jobs:1', 1, 'has space'), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 4003 } }, 'a malformed id is refused before it is sent')
  await c.next((f) => f.op === 'msg' && f['seq'] === keyed.seq, 'the keyed message')
  t.equal(c.messages('jobs:1').length, 2, 'the retried one was delivered once')
})

t.test('regression: a message over --live-max-message fails in the publisher, and the home refuses one sent anyway', async (t) => {
  const node = await startNode(t, 'live', { children: 1, 'node-id': 'live-q' })
  t.teardown(() => node.stop())
  const c = await connectLive(t, node.port, { token: token({ sub: ['jobs:*'] }) })
  const sub = await c.call({ op: 'sub', ch: 'jobs:big' })
  const routing = { region: 'us-1', version: 1, nodes: [{ id: 'live-q', address: '127.0.0.1', port: node.port }] }
  const log = createLogger('silent', { role: 'test', node: 'test' })
  const big = { blob: 'x'.repeat(900 * 1024) }

  const publisher = createLivePublisher({ secret: SECRET, id: 'app-test', log })
  t.teardown(() => publisher.close())
  publisher.setRouting(routing)
  await t.rejects(publisher.publish('jobs:big', big), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 4004, limit: 64 * 1024 } }, 'refused before it is sent')

  // A publisher told a larger limit (another node's setting, or any peer on the link) reaches the home: refused there.
  const lax = createLivePublisher({ secret: SECRET, id: 'lax-test', log, maxMessage: 16 * 1024 ** 2 })
  t.teardown(() => lax.close())
  lax.setRouting(routing)
  await t.rejects(lax.publish('jobs:big', big), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 4004 } }, 'the home holds every path to the limit')
  const after = await lax.publish('jobs:big', { small: true })
  const frames = await c.next((f) => f.op === 'msg', 'the next message')
  t.match(frames, { seq: after.seq, data: { small: true } }, 'the subscriber got the small message only')
  t.equal(c.messages('jobs:big').length, 1)
  t.equal(after.seq, (sub['seq'] as number) + 1, 'the refused message took no sequence number (it was never stored)')
})

t.test('a publish answered 5031 (--live-replicas 2: sent to a node that is not the home) is sent again to the home of the next table', async (t) => {
  const metaPort = await freePort()
  const flags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
  const seed = await startNode(t, 'seed', { ...flags, 'meta-port': metaPort, 'seed-grace': '0' })
  t.teardown(() => seed.stop())
  const nodes: { id: string; address: string; port: number; node: StartedNode }[] = []
  for (const id of ['live-m1', 'live-m2']) {
    const node = await startNode(t, 'live', { ...flags, 'live-replicas': 2, children: 1, 'node-id': id })
    t.teardown(() => node.stop())
    nodes.push({ id, address: '127.0.0.1', port: node.port, node })
  }
  for (const { node } of nodes) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true, 'both listed')
  const table = new Rendezvous(nodes)
  // A channel homed on live-m2: live-m1 is its backup and answers a publish sent to it 5031.
  const ch = Array.from({ length: 100 }, (_, i) => `jobs:m${i}`).find((name) => table.pick(name)!.id === 'live-m2')!
  const c = await connectLive(t, nodes[1]!.port, { token: token({ sub: ['jobs:*'] }) })
  const ok = await c.call({ op: 'sub', ch })

  const publisher = createLivePublisher({ secret: SECRET, id: 'app-moved', log: createLogger('silent', { role: 'test', node: 'test' }), timeoutMs: 10_000 })
  t.teardown(() => publisher.close())
  const entry = ({ id, address, port }: (typeof nodes)[number]) => ({ id, address, port })
  publisher.setRouting({ region: 'us-1', version: 1, nodes: [entry(nodes[0]!)] })
  // The first send reaches live-m1, which answers 5031; the publisher waits for its next table and sends it to live-m2.
  let settled = false
  const sent = publisher.publish(ch, { step: 1 }, 'moved-1').finally(() => (settled = true))
  await sleep(500)
  t.notOk(settled, 'still waiting for a newer table')
  publisher.setRouting({ region: 'us-1', version: 2, nodes: nodes.map(entry) })
  const answer = await sent
  t.equal(answer.seq, (ok['seq'] as number) + 1, 'stored once, at the home')
  t.match(await c.next((f) => f.op === 'msg', 'the message'), { ch, seq: answer.seq, data: { step: 1 } })

  // A table that never catches up: after three sends answered 5031 the publish fails with the home's code.
  const stale = createLivePublisher({ secret: SECRET, id: 'app-stale', log: createLogger('silent', { role: 'test', node: 'test' }), timeoutMs: 300 })
  t.teardown(() => stale.close())
  stale.setRouting({ region: 'us-1', version: 1, nodes: [entry(nodes[0]!)] })
  await t.rejects(stale.publish(ch, { step: 2 }), { code: 'ESPRA_ERR_LIVE_PUBLISH', details: { code: 5031 } }, 'still moved after three retries')
  t.equal(c.messages(ch).length, 1, 'nothing else stored')
})
