// MTA-STS on delivery straight to MX hosts: a DNS server in the test publishes the _mta-sts TXT records, an HTTPS
// server in the test serves the policies (--mail-mta-sts-fetch points the mail node at it; its certificate, and the
// receiving MX's, come from a CA the test makes, trusted with --mail-tls-ca), and a real smtp-server with STARTTLS
// takes the mail. enforce: delivered over TLS to a host the policy names; deferred with the reason when no MX host
// matches, or when the host's certificate is not valid for its name. testing: delivered, the mismatch logged. The
// policy is fetched once per id (cached for max_age).
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { admin, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { startDnsServer } from '../../helpers/dns-server.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'
import { testDir } from '../../helpers/temp-dir.js'

const dir = testDir('espra-mta-sts-')
const f = (name: string) => join(dir, name)
const ssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' })
ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=espra test CA', '-days', '1', '-keyout', f('ca.key'), '-out', f('ca.crt')])
ssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=mx1.dest.test', '-keyout', f('leaf.key'), '-out', f('leaf.csr')])
writeFileSync(f('san.ext'), 'subjectAltName=DNS:mx1.dest.test,DNS:mta-sts.dest.test,DNS:mta-sts.wrong.test,DNS:mta-sts.trial.test,DNS:mta-sts.badcert.test\n')
ssl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('san.ext'), '-out', f('leaf.crt')])
const tls = { key: readFileSync(f('leaf.key')), cert: readFileSync(f('leaf.crt')) }

const policy = (mode: string, mx: string[]) => `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}\r\n`).join('')}max_age: 86400\r\n`
const POLICIES: Record<string, string> = {
  'mta-sts.dest.test': policy('enforce', ['mx1.dest.test', '*.backup.test']),
  'mta-sts.wrong.test': policy('enforce', ['mx.elsewhere.test']),
  'mta-sts.trial.test': policy('testing', ['mx.elsewhere.test']),
  // mx2.badcert.test is named, but the MX presents mx1.dest.test's certificate.
  'mta-sts.badcert.test': policy('enforce', ['mx2.badcert.test']),
}

t.test('outbound mail honours MTA-STS', async (t) => {
  const fetched = new Map<string, number>()
  const https = createServer(tls, (req, res) => {
    const host = (req.headers.host ?? '').toLowerCase()
    fetched.set(host, (fetched.get(host) ?? 0) + 1)
    const body = req.url === '/.well-known/mta-sts.txt' ? POLICIES[host] : undefined
    if (body === undefined) return void res.writeHead(404).end()
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body)
  })
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => https.close(() => resolve())))
  const httpsPort = (https.address() as { port: number }).port

  const cluster = await startAppCluster(t)
  const receiver = await startReceiver({ tls })
  t.teardown(() => receiver.close())
  const dns = await startDnsServer({
    'dest.test': { mx: [[10, 'mx1.dest.test']] },
    '_mta-sts.dest.test': { txt: 'v=STSv1; id=20261203a' },
    'mx1.dest.test': { a: ['127.0.0.1'] },
    'wrong.test': { mx: [[10, 'mx1.dest.test']] },
    '_mta-sts.wrong.test': { txt: 'v=STSv1; id=w1' },
    'trial.test': { mx: [[10, 'mx1.dest.test']] },
    '_mta-sts.trial.test': { txt: 'v=STSv1; id=t1' },
    'badcert.test': { mx: [[10, 'mx2.badcert.test']] },
    'mx2.badcert.test': { a: ['127.0.0.1'] },
    '_mta-sts.badcert.test': { txt: 'v=STSv1; id=b1' },
    // No policy: opportunistic as before.
    'plain.test': { mx: [[10, 'mx1.dest.test']] },
    'espra.test': { mx: [[10, 'mx1.dest.test']] },
  })
  t.teardown(() => dns.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'mail-dns': dns.address, 'mail-mx-port': receiver.port, 'mail-smtp-timeout': '3s',
    'mail-mta-sts-fetch': `127.0.0.1:${httpsPort}`, 'mail-tls-ca': f('ca.crt'), 'mail-retry-base': '1h',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const send = async (to: string) => {
    const sent = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'shop@espra.test', '--to', to, '--subject', 'sts', '--text', 'x'])
    t.equal(sent.code, 0, sent.stderr)
    return sent.stdout.trim().split('\n').pop()!
  }
  const settled = (id: string) => waitFor(`message ${id}: every domain delivered or deferred`, async () => {
    const r = (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord
    return Object.values(r.domains).every((d) => d.state !== 'queued') ? r : undefined
  }, 40_000)

  const id = await send('ann@dest.test,bob@wrong.test,cat@trial.test,dan@badcert.test,eve@plain.test')
  const rec = await settled(id)
  t.same(rec.domains['dest.test']!.delivered, ['ann@dest.test'], 'enforce: delivered to the MX host the policy names')
  t.equal(receiver.received.find((m) => m.to.includes('ann@dest.test'))?.secure, true, 'over STARTTLS')
  const deferred = (domain: string) => rec.events.find((e) => e.type === 'deferred' && e.domain === domain)?.detail ?? ''
  t.match(deferred('wrong.test'), /MTA-STS: wrong\.test enforces a policy \(id w1\) naming mx mx\.elsewhere\.test; none of its MX hosts \(mx1\.dest\.test\) matches: deferred/, 'enforce, no matching MX: deferred with the reason')
  t.same(rec.domains['wrong.test']!.delivered, [])
  t.match(deferred('badcert.test'), /MTA-STS: badcert\.test enforces TLS with a valid certificate for mx2\.badcert\.test: mx2\.badcert\.test:\d+: .*(altname|certificate|Hostname)/i, 'enforce, a certificate not valid for the host: deferred with the reason')
  t.same(rec.domains['trial.test']!.delivered, ['cat@trial.test'], 'testing: delivered although the MX is not named')
  t.same(rec.domains['plain.test']!.delivered, ['eve@plain.test'], 'no policy: delivered as before')
  await mail.waitForLog((l) => /MTA-STS \(testing\): MX hosts of trial\.test its policy does not name \(mx1\.dest\.test\)/.test(String(l['msg'])), 'the testing mismatch logged')
  t.equal(receiver.received.filter((m) => m.to.some((r) => /@(wrong|badcert)\.test$/.test(r))).length, 0, 'nothing reached the receiver for the deferred domains')

  // The same policy id: the cached policy is used, not fetched again.
  const again = await settled(await send('fay@dest.test'))
  t.same(again.domains['dest.test']!.delivered, ['fay@dest.test'])
  t.equal(fetched.get('mta-sts.dest.test'), 1, 'the policy was fetched once for its id')
  t.equal(fetched.get('mta-sts.plain.test'), undefined, 'no TXT record, no fetch')
})
