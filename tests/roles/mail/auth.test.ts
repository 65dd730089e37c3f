// SPF, DKIM, DMARC and ARC results on real processes: a seed, a mail node whose lookups go to a small real DNS
// server holding the test's records (--mail-dns-servers), nodemailer signing with DKIM as the client, and an app
// node whose handleMail writes down message.auth. With --mail-dmarc-reject the mail node verifies before its
// answer (without it the handoff verifies after the 250: auth-after-250.test.ts): a DMARC failure under p=reject is
// refused 550 5.7.1 at the end of DATA, not before the lookups are answered, and nothing is stored; under p=none
// it is taken with its results.
import { generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { startDnsServer } from '../../helpers/dns-server.js'
import { storedRaw } from './stored-raw.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id, subject: m.subject, auth: m.auth }) + '\\n')
}
`

interface Handled { id: string; subject: string; auth: { spf: { result: string }; dkim: { result: string; signatures: unknown[] }; dmarc: { result: string; policy: string | null }; arc: { result: string }; header: string } | null }

t.test('authentication results reach handleMail; DMARC p=reject failures refused when configured', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const dns = await startDnsServer({
    'sel._domainkey.sender.test': { txt: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` },
    'sender.test': { txt: 'v=spf1 ip4:127.0.0.1 -all' },
    '_dmarc.sender.test': { txt: 'v=DMARC1; p=reject' },
    'other.test': { txt: 'v=spf1 -all' },
    '_dmarc.other.test': { txt: 'v=DMARC1; p=none' },
  })
  t.teardown(() => dns.close())
  const cluster = await startAppCluster(t)
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir, 'mail-dns-servers': dns.address, 'mail-dmarc-reject': 'true',
    // The longest: the answer waits for the lookups below, never for the timeout.
    'mail-auth-timeout': '60s',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const dir = testDir('espra-mail-auth-')
  const app = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const handled = (): Handled[] => {
    try {
      return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Handled)
    } catch {
      return []
    }
  }
  const dkim = { domainName: 'sender.test', keySelector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
  const transport = (signed: boolean) => nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, name: 'client.sender.test', ...(signed ? { dkim } : {}) })
  const idOf = (response: string) => /queued as (m[0-9a-z]+)/.exec(response)![1]!

  const good = await transport(true).sendMail({ from: 'Ann <ann@sender.test>', to: 'bob@example.test', subject: 'signed', text: 'hello\n'.repeat(500) })
  const goodId = idOf(good.response)
  await waitFor('the signed message handled', () => handled().some((m) => m.id === goodId), 30_000)
  const got = handled().find((m) => m.id === goodId)!
  t.match(got.auth, {
    spf: { result: 'pass', domain: 'sender.test' },
    dkim: { result: 'pass', signatures: [{ result: 'pass', domain: 'sender.test', selector: 'sel', aligned: true }] },
    dmarc: { result: 'pass', domain: 'sender.test', policy: 'reject' },
    arc: { result: 'none' },
  }, 'handleMail gets SPF, DKIM, DMARC and ARC results')
  t.match(got.auth?.header, /dkim=pass/)
  t.ok(dns.asked.some((q) => q.startsWith('sel._domainkey.sender.test ')), 'the DKIM key was looked up through --mail-dns-servers')

  // From sender.test, unsigned, with an envelope SPF does not align with: DMARC fails, and sender.test says reject.
  // Its lookups are held: the answer waits for them (verified before the answer, so that it can be a refusal).
  dns.hold()
  let answered = false
  const sent = transport(false).sendMail({ envelope: { from: 'x@elsewhere.test', to: ['bob@example.test'] }, from: 'ceo@sender.test', to: 'bob@example.test', subject: 'spoofed', text: 'pay me' })
    .then(() => null, (e: { responseCode?: number; response?: string }) => e)
    .finally(() => (answered = true))
  await waitFor('the mail node asks its lookups', () => dns.held() > 0, 30_000)
  t.notOk(answered, 'no answer to the client while the lookups hang')
  dns.release()
  const spoofed = await sent
  t.equal(spoofed?.responseCode, 550, 'a DMARC failure under p=reject is refused')
  t.match(spoofed?.response, /^550 5\.7\.1 Message refused: DMARC fails and sender\.test asks for rejection/)
  t.ok(mail.logs.some((l) => /DMARC fails and sender\.test publishes p=reject/.test(l.msg)), 'the log says why')

  // other.test publishes p=none: a failure is taken, with its results, for the app to judge.
  const lax = await transport(false).sendMail({ from: 'x@other.test', to: 'bob@example.test', subject: 'lax', text: 'hi' })
  const laxId = idOf(lax.response)
  await waitFor('the p=none message handled', () => handled().some((m) => m.id === laxId), 30_000)
  t.match(handled().find((m) => m.id === laxId)!.auth, { spf: { result: 'fail' }, dkim: { result: 'none' }, dmarc: { result: 'fail', policy: 'none' } })

  t.same((await storedRaw(cluster)).all, [goodId, laxId].sort(), 'nothing of the refused message is stored (blob store or datastore)')
})
