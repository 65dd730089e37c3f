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
})
