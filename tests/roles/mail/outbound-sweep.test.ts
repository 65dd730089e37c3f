// The outbound mail sweep on real processes: a seed with --mail-outbound-retention 2s, a mail node delivering
// through a relay (smtp-server in the test) that takes one recipient, refuses one (5xx: a bounce and a suppression,
// --mail-suppression-ttl 2s) and defers one; finished messages (delivered, failed, dropped) go with their raw bytes,
// a held one stays, and the expired suppression goes.
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { admin, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { scrape } from '../../helpers/prom-text.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'

t.test('finished outbound messages and expired suppressions are swept after their retention; held ones stay', async (t) => {
  const cluster = await startAppCluster(t, {}, { 'mail-outbound-retention': '2s' })
  const receiver = await startReceiver({
    rcpt: (address) => (address.startsWith('gone') ? [550, '5.1.1 no such user'] : address.startsWith('wait') ? [451, '4.2.1 mailbox busy'] : null),
  })
  t.teardown(() => receiver.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'smtp-relay': `smtp://127.0.0.1:${receiver.port}`,
    'mail-retry-base': '300ms', 'mail-retry-max': '600ms', 'mail-suppression-ttl': '2s',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const run = (args: string[]) => admin(['mail', ...args, '--seed', cluster.seedAddress])
  const sendTo = async (to: string) => {
    const r = await run(['send', '--from', 'shop@espra.test', '--to', to, '--subject', `to ${to}`, '--text', 'x'])
    if (r.code !== 0) throw new Error(r.stderr)
    return r.stdout.trim().split('\n').pop()!
  }
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const record = async (id: string) => (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord | null

  const delivered = await sendTo('ann@dest.test')
  t.ok(await ds.get('mailOutbound', `raw/${delivered}`), 'the raw bytes are a record')
  const failed = await sendTo('gone@dest.test')
  const dropped = await sendTo('wait@dest.test')
  const held = await sendTo('wait2@dest.test')
  await waitFor('deferred', async () => (await record(dropped))?.events.some((e) => e.type === 'deferred') === true, 15_000)
  t.equal((await run(['hold', held])).code, 0)
  t.equal((await run(['drop', dropped])).code, 0)
  // (Polled at the receiver: a finished record may be swept within seconds.)
  await waitFor('delivered', () => receiver.received.some((m) => m.to.includes('ann@dest.test')), 15_000)

  await waitFor('the finished ones swept', async () => (await Promise.all([delivered, failed, dropped].map(record))).every((r) => r === null), 30_000)
  t.equal(await ds.get('mailOutbound', `raw/${delivered}`), null, 'their raw bytes too')
  t.equal(await ds.get('mailOutbound', `raw/${failed}`), null)
  t.ok(await record(held), 'the held one stays')
  t.ok(await ds.get('mailOutbound', `raw/${held}`), 'with its bytes')
  const shown = await run(['show', delivered])
  t.equal(shown.code, 1)
  t.match(shown.stderr, /ESPRA_ERR_MAIL_NOT_FOUND/, 'admin mail show: no longer known')
  await waitFor('the expired suppression swept', async () => (await ds.get('mailSuppression', 'gone@dest.test')) === null, 15_000)
  const m = await waitFor('counted', async () => {
    const p = await scrape(cluster.seed.metricsPort)
    return p.value('espra_seed_mail_outbound_swept_total', { process: 'parent', state: 'suppression' }) >= 1 ? p : undefined
  }, 10_000)
  // Bounces are outbound messages of their own (to shop@espra.test, delivered by the relay): swept as delivered too.
  t.ok(m.value('espra_seed_mail_outbound_swept_total', { process: 'parent', state: 'delivered' }) >= 1)
  t.equal(m.value('espra_seed_mail_outbound_swept_total', { process: 'parent', state: 'failed' }), 1)
  t.equal(m.value('espra_seed_mail_outbound_swept_total', { process: 'parent', state: 'dropped' }), 1)
  t.ok(cluster.seed.logs.some((l) => /^outbound mail swept: /.test(l.msg)), 'the seed logs what it swept')
})
