// Verification after the 250 (the default, --mail-dmarc-reject false), on real processes: a seed, mail nodes whose
// DNS server (--mail-dns-servers) can be made to hang, nodemailer signing with DKIM as the client, and app nodes
// whose handleMail writes down message.auth. The 250 comes while every lookup still hangs; the app node's handoff
// verifies the stored message, again after an app node dies mid-verification, and with the lookups still hanging
// past the mail node's --mail-auth-timeout handleMail gets temperror results.
import { generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { killHard, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { startDnsServer } from '../../helpers/dns-server.js'
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

interface Handled { id: string; subject: string; auth: { spf: { result: string; domain: string | null }; dkim: { result: string }; dmarc: { result: string; policy: string | null }; arc: { result: string }; header: string } | null }

t.test('the 250 does not wait for DNS; handleMail gets the results the handoff verified', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const dns = await startDnsServer({
    'sel._domainkey.sender.test': { txt: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` },
    'sender.test': { txt: 'v=spf1 ip4:127.0.0.1 -all' },
    '_dmarc.sender.test': { txt: 'v=DMARC1; p=reject' },
  })
  t.teardown(() => dns.close())
  // A short lease: the task of an app node killed mid-verification runs again soon.
  const cluster = await startAppCluster(t, { 'task-lease': '2s' })
  const mailNode = async (id: string, authTimeout: string) => {
    const smtpPort = await freePort()
    const node = await startNode(t, 'mail', {
      seed: cluster.seedAddress, 'node-id': id, children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
      'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir, 'mail-dns-servers': dns.address, 'mail-auth-timeout': authTimeout,
    })
    await waitFor(`${id} registered`, async () => (await health(node.port)).body['seedConnected'] === true)
    return { node, smtpPort }
  }
  // The longest timeout: whatever waits for these lookups waits for them to be answered, not for the timeout.
  const patient = await mailNode('mail-1', '60s')
  const hasty = await mailNode('mail-2', '1s')
  const dir = testDir('espra-mail-auth-after-')
  const app1 = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app1, 'b1')
  const handled = (): Handled[] => {
    try {
      return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Handled)
    } catch {
      return []
    }
  }
  const dkim = { domainName: 'sender.test', keySelector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
  const send = (smtpPort: number, subject: string) => nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, name: 'client.sender.test', dkim })
    .sendMail({ from: 'Ann <ann@sender.test>', to: 'bob@example.test', subject, text: 'hello\n'.repeat(500) })
  const idOf = (response: string) => /queued as (m[0-9a-z]+)/.exec(response)![1]!

  dns.hold()
  const first = await send(patient.smtpPort, 'while DNS hangs')
  t.match(first.response, /^250 /, 'the message is taken')
  t.equal(dns.answered(), 0, 'the 250 came while no lookup had been answered (the mail node waits 60 s for one)')
  const firstId = idOf(first.response)
  await waitFor('the handoff asks its lookups', () => dns.held() > 0, 30_000)
  t.same(handled(), [], 'not handed while its lookups hang')

  // The app node dies mid-verification; another takes the task once its lease expires and verifies again.
  await killHard(app1)
  const app2 = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.serving(app2, 'b1')
  dns.release()
  await waitFor('the message handled after the lookups were answered', () => handled().some((m) => m.id === firstId), 30_000)
  t.equal(handled().filter((m) => m.id === firstId).length, 1, 'handed once')
  t.match(handled().find((m) => m.id === firstId)!.auth, {
    spf: { result: 'pass', domain: 'sender.test' },
    dkim: { result: 'pass' },
    dmarc: { result: 'pass', policy: 'reject' },
    arc: { result: 'none' },
  }, 'handleMail gets the results verified after the 250')
  t.ok(patient.node.logs.some((l) => l.msg === `inbound message ${firstId} stored and queued` && l['spf'] === undefined), 'the mail node logged it taken without results of its own')

  // Lookups that hang past the mail node's --mail-auth-timeout (1s): the message is handed with temperror.
  dns.hold()
  const second = await send(hasty.smtpPort, 'DNS never answers')
  t.match(second.response, /^250 /)
  const secondId = idOf(second.response)
  await waitFor('the second message handled', () => handled().some((m) => m.id === secondId), 30_000)
  t.ok(dns.held() > 0, 'its lookups were asked and are still unanswered')
  const got = handled().find((m) => m.id === secondId)!
  t.match(got.auth, { spf: { result: 'temperror' }, dkim: { result: 'temperror' }, dmarc: { result: 'temperror' }, arc: { result: 'temperror' } }, 'temperror results')
  t.match(got.auth?.header, /not finished within 1000 ms/, 'after the mail node\'s timeout')
  dns.release()
})
