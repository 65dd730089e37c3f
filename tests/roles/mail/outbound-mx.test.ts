// Delivery straight to MX hosts (no relay): a mail node reading DNS from a small server this test runs (--mail-dns),
// delivering to a real smtp-server on --mail-mx-port. MX in preference order (a dead first host skipped), the
// implicit MX (no MX: the domain's own A record), a null MX and a domain that does not exist (both bounce at once).
import t from 'tap'
import { admin, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { startDnsServer } from '../../helpers/dns-server.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'

t.test('outbound mail to MX hosts', async (t) => {
  const cluster = await startAppCluster(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const dns = await startDnsServer({
    // mx0 has an address nothing listens on (127.0.0.2): the next host is tried.
    'dest.test': { mx: [[20, 'mx1.dest.test'], [10, 'mx0.dest.test']] },
    'mx0.dest.test': { a: ['127.0.0.2'] },
    'mx1.dest.test': { a: ['127.0.0.1'] },
    'plain.test': { a: ['127.0.0.1'] },
    'nomail.test': { mx: [[0, '.']] },
    'espra.test': { mx: [[10, 'mx1.dest.test']] },
  })
  t.teardown(() => dns.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'mail-dns': dns.address, 'mail-mx-port': receiver.port, 'mail-smtp-timeout': '2s',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const sent = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'shop@espra.test', '--to', 'ann@dest.test,bob@plain.test,cat@nomail.test,dan@nxdomain.test', '--subject', 'to MX hosts', '--text', 'x'])
  t.equal(sent.code, 0, sent.stderr)
  const id = sent.stdout.trim().split('\n').pop()!
  const rec = await waitFor('every domain done', async () => {
    const r = (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord
    return Object.values(r.domains).every((d) => d.state === 'done') ? r : undefined
  }, 30_000)
  t.same(rec.domains['dest.test']!.delivered, ['ann@dest.test'], 'MX in preference order, a dead host skipped')
  t.match(rec.events.find((e) => e.type === 'delivered' && e.domain === 'dest.test')?.detail, /^mx1\.dest\.test: 250 /)
  t.same(rec.domains['plain.test']!.delivered, ['bob@plain.test'], 'implicit MX: the domain\'s own address')
  t.match(rec.events.find((e) => e.type === 'bounced' && e.domain === 'nomail.test')?.detail, /^556 5\.1\.10 nomail\.test publishes a null MX/)
  t.match(rec.events.find((e) => e.type === 'bounced' && e.domain === 'nxdomain.test')?.detail, /^550 5\.1\.2 nxdomain\.test: no such domain/)
  t.equal(rec.domains['nomail.test']!.attempts, 1, 'a null MX is not retried')
  // The two bounces go to the sender's own MX (espra.test → mx1): one bounce per failed domain.
  const bounces = await waitFor('bounces delivered to the sender', () => {
    const b = receiver.received.filter((m) => m.from === '' && m.to.includes('shop@espra.test'))
    return b.length >= 2 ? b : undefined
  }, 20_000)
  t.match(bounces.map((b) => b.raw.toString()).join('\n'), /Final-Recipient: rfc822; cat@nomail\.test[\s\S]*Status: 5\.1\.10|Final-Recipient: rfc822; dan@nxdomain\.test/)
  t.equal(receiver.received.filter((m) => m.from === 'shop@espra.test').length, 2, 'the two deliverable domains, one transaction each')
})
