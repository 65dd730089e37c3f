// Other nodes publish through lib/live/publisher.ts to the channel's home over the internal link; subscribers get it.
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import { createLivePublisher } from '../../../lib/live/publisher.js'
import { SECRET, startNode } from '../../helpers/cluster.js'
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
