// DKIM: a mail node started with --dkim signs what it sends; the signature is verified with mailauth against the TXT
// record `admin mail dkim-record` prints (given to mailauth's resolver). A missing key file, or one that is not an RSA
// private key, stops the node at start with one line naming it.
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dkimVerify } from 'mailauth/lib/dkim/verify.js'
import t from 'tap'
import { admin, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

const dir = testDir('espra-dkim-')
const keyFile = join(dir, 'espra.test.pem')
writeFileSync(keyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }))

t.test('outbound mail is signed; mailauth verifies it with the printed record', async (t) => {
  const cluster = await startAppCluster(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const dkim = `espra.test:s2026:${keyFile}`
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'smtp-relay': `smtp://127.0.0.1:${receiver.port}`, dkim,
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const sent = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'news@espra.test', '--to', 'ann@dest.test', '--subject', 'signed', '--text', 'hello\nworld'])
  t.equal(sent.code, 0, sent.stderr)
  const got = await waitFor('delivered', () => receiver.received[0], 15_000)
  t.match(got.raw.toString(), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=espra\.test;/m)

  const printed = await admin(['mail', 'dkim-record', 'espra.test', '--dkim', dkim])
  t.equal(printed.code, 0, printed.stderr)
  const m = /^(s2026\._domainkey\.espra\.test)\. IN TXT ((?:"[^"]{1,255}" ?)+)\n$/.exec(printed.stdout)
  t.ok(m, `a zone line: ${printed.stdout}`)
  const strings = [...m![2]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!)
  t.match(strings.join(''), /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+$/)
  const resolver = async (name: string, type: string) => {
    if (name === 's2026._domainkey.espra.test' && type === 'TXT') return [strings]
    throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' })
  }
  const verified = await dkimVerify(got.raw, { resolver, sender: 'news@espra.test' } as Parameters<typeof dkimVerify>[1])
  t.equal(verified.results.length, 1)
  t.equal(verified.results[0]!.status.result, 'pass', JSON.stringify(verified.results[0]!.status))
  t.equal(verified.results[0]!.signingDomain, 'espra.test')

  // The same message changed in transit fails.
  const tampered = Buffer.from(got.raw.toString().replace('hello', 'HELLO'))
  const bad = (await dkimVerify(tampered, { resolver } as Parameters<typeof dkimVerify>[1])).results[0]!.status
  t.not(bad.result, 'pass', `a changed body does not verify (${bad.result}: ${bad.comment ?? ''})`)

  const none = await admin(['mail', 'dkim-record', 'other.test', '--dkim', dkim])
  t.equal(none.code, 2)
  t.match(none.stderr, /<domain>: no key for other\.test in --dkim \(it names espra\.test\)/)
})

t.test('a DKIM key file that is missing, not a key, or not RSA stops the node at start', async (t) => {
  const notKey = join(dir, 'not-a-key.pem')
  writeFileSync(notKey, 'hello, I am not a key\n')
  const ed = join(dir, 'ed.pem')
  writeFileSync(ed, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const cases: [string, RegExp][] = [
    [`espra.test:s1:${join(dir, 'missing.pem')}`, /^espra-node: --dkim: the key file of espra\.test, \S+missing\.pem, cannot be read \(ENOENT\)\n$/],
    [`espra.test:s1:${notKey}`, /^espra-node: --dkim: \S+not-a-key\.pem \(for espra\.test\) is not a PEM private key\n$/],
    [`espra.test:s1:${ed}`, /--dkim: \S+ed\.pem \(for espra\.test\) must be an RSA private key of at least 1024 bits \(got ed25519\)/],
    ['espra.test', /^espra-node: --dkim: must be domain:selector:keyfile/],
  ]
  for (const [value, expected] of cases) {
    const r = await runCli(['config', 'check', '--role=mail', `--dkim=${value}`], { env: { ...process.env, ESPRA_SECRET: 'y'.repeat(32) } })
    t.not(r.code, 0)
    t.match(r.stderr, expected)
  }
  const node = await startNode(t, 'mail', { dkim: `espra.test:s1:${notKey}`, 'smtp-port': await freePort() }, { noWait: true })
  const exit = await node.exited
  t.not(exit.code, 0, 'the node itself refuses to start')
  t.match(node.stderr(), /--dkim: \S+not-a-key\.pem \(for espra\.test\) is not a PEM private key/)
})
