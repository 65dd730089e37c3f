// At least once through a kill -9: the mail node is killed while the receiving smtp-server holds the message's DATA
// (before its 250); a new mail node delivers it again once the lease expires. Real processes, a real smtp-server.
import t from 'tap'
import { admin, killHard, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'

t.test('kill -9 mid-delivery loses nothing', async (t) => {
  const cluster = await startAppCluster(t)
  let release!: () => void
  const held = new Promise<void>((resolve) => (release = resolve))
  let holding = true
  // The first copy is held before its 250 until the node that sent it is dead; later copies are answered at once.
  const receiver = await startReceiver({ hold: () => (holding ? ((holding = false), held) : undefined) })
  t.teardown(() => receiver.close())
  const flags = {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'smtp-relay': `smtp://127.0.0.1:${receiver.port}`, 'mail-lease': '2s',
  }
  const first = await startNode(t, 'mail', { ...flags, 'smtp-port': await freePort() })
  await waitFor('mail registered', async () => (await health(first.port)).body['seedConnected'] === true)

  const sent = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'shop@espra.test', '--to', 'ann@dest.test', '--subject', 'survives', '--text', 'x'])
  t.equal(sent.code, 0, sent.stderr)
  const id = sent.stdout.trim().split('\n').pop()!
  await waitFor('the receiver has the DATA, unanswered', () => receiver.received.length === 1, 15_000)
  await killHard(first)
  await waitFor('the receiver saw the connection go', () => receiver.open === 0)
  release()

  const second = await startNode(t, 'mail', { ...flags, 'smtp-port': await freePort() })
  await waitFor('delivered again after the lease expired', () => receiver.received.find((m) => m.acked), 30_000)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const rec = await waitFor('record says delivered', async () => {
    const r = (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord
    return r.domains['dest.test']!.state === 'done' ? r : undefined
  })
  t.same(rec.domains['dest.test']!.delivered, ['ann@dest.test'])
  t.equal(rec.events.filter((e) => e.type === 'delivered').length, 1)
  t.equal(receiver.received[0]!.acked, false, 'the copy cut before its 250 was never acknowledged')
  t.equal(receiver.received.filter((m) => m.acked).length, 1, 'one acknowledged copy')
  t.equal((await health(second.port)).status, 200)
})
