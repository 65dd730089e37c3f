// acceptRecipient(address) asked at RCPT on real processes: a seed, two mail nodes (--mail-recipient-fail open and
// closed, --mail-recipient-timeout 1s) and an app node whose build refuses some addresses, answers slowly or
// throws for others; the internal endpoint refuses whatever a mail node of the cluster did not sign.
import { request } from 'node:http'
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { openSmtp } from '../../helpers/smtp-session.js'
import { ACCEPT_RECIPIENT_PATH, signedQuestion, SIGNATURE_HEADER } from '../../../lib/mail/inbound-recipient.js'

const APP = `
export function handle() { return 'ok' }
export function handleMail() {}
export async function acceptRecipient(a) {
  if (a.startsWith('nobody@')) return false
  if (a.startsWith('off@')) return { accept: false, reason: 'mailbox disabled\\r\\nX-Injected: 1' }
  if (a.startsWith('slow@')) { await new Promise((r) => setTimeout(r, 3000)); return true }
  if (a.startsWith('bad@')) return 42
  if (a.startsWith('throw@')) throw new Error('boom')
  return true
}
`

/** RCPT replies for `addresses`, one transaction. */
async function rcpt(port: number, addresses: string[]): Promise<string[]> {
  const s = await openSmtp(port)
  await s.command('EHLO c.test')
  await s.command('MAIL FROM:<a@sender.test>')
  const out: string[] = []
  for (const a of addresses) out.push(await s.command(`RCPT TO:<${a}>`))
  s.close()
  return out
}

function post(port: number, body: string, headers: Record<string, string>, method = 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: ACCEPT_RECIPIENT_PATH, method, headers: { 'content-type': 'application/json', ...headers }, agent: false }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode!, body: text }))
    })
    req.on('error', reject)
    req.end(method === 'GET' ? undefined : body)
  })
}

t.test('acceptRecipient at RCPT, failing open or closed', async (t) => {
  const cluster = await startAppCluster(t, { threads: 2 })
  const start = async (id: string, fail: string) => {
    const smtpPort = await freePort()
    const node = await startNode(t, 'mail', {
      seed: cluster.seedAddress, 'node-id': id, children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
      'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir, 'mail-recipient-timeout': '1s', 'mail-recipient-fail': fail,
    })
    await waitFor(`${id} registered`, async () => (await health(node.port)).body['seedConnected'] === true)
    return { node, smtpPort }
  }
  const open = await start('mail-open', 'open')
  const closed = await start('mail-closed', 'closed')

  const noApp = [await rcpt(open.smtpPort, ['ok@example.test']), await rcpt(closed.smtpPort, ['ok@example.test'])]
  t.match(noApp[0], [/^250 /], 'no app node: open takes the recipient')
  t.match(noApp[1], [/^451 4\.3\.0 Cannot check this recipient now/], 'no app node: closed answers 451')
  t.ok(closed.node.logs.some((l) => l.level === 'warn' && /could not say whether it takes <ok@example\.test> \(no app node serves a build\): answered 451/.test(l.msg)), 'the log says why')

  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  // The mail nodes keep the app node list for 2 s.
  await waitFor('the open node sees the app', async () => /^550 /.test((await rcpt(open.smtpPort, ['nobody@example.test']))[0]!), 15_000)

  const both = ['ok@example.test', 'nobody@example.test', 'off@example.test', 'slow@example.test', 'bad@example.test', 'throw@example.test', 'other@elsewhere.test']
  const o = await rcpt(open.smtpPort, both)
  t.match(o[0], /^250 /, 'taken')
  t.match(o[1], /^550 5\.1\.1 <nobody@example\.test>: no such recipient here$/, 'false: 550 5.1.1')
  t.match(o[2], /^550 5\.1\.1 <off@example\.test>: mailbox disabled X-Injected: 1$/, '{accept: false, reason}: the reason in the reply, on one line')
  t.match(o[3], /^250 /, 'too slow: open takes it')
  t.match(o[4], /^250 /, 'a wrong answer: open takes it')
  t.match(o[5], /^250 /, 'a throw: open takes it')
  t.match(o[6], /^550 5\.1\.1 .*no mail is accepted for this domain/, 'a foreign domain is refused before the app is asked')
  const c = await rcpt(closed.smtpPort, both.slice(0, 6))
  t.match(c, [/^250 /, /^550 5\.1\.1 /, /^550 5\.1\.1 /, /^451 4\.3\.0 /, /^451 4\.3\.0 /, /^451 4\.3\.0 /], 'closed: 451 when the app has no answer')
  t.ok(closed.node.logs.some((l) => /could not say whether it takes <slow@example\.test> \(no answer within 1000 ms\)/.test(l.msg)), 'the timeout is logged')

  // The endpoint on the app node's public port answers only what a mail node signed.
  const { body, signature } = signedQuestion(SECRET, 'nobody@example.test')
  t.match(await post(app.port, body, { [SIGNATURE_HEADER]: signature }), { status: 200, body: /"accept":false/ }, 'signed: the verdict')
  for (const [what, headers, b, method] of [
    ['unsigned', {}, body, 'POST'],
    ['wrongly signed', { [SIGNATURE_HEADER]: 'a'.repeat(64) }, body, 'POST'],
    ['signed for another body', { [SIGNATURE_HEADER]: signature }, body.replace('nobody', 'nobod2'), 'POST'],
    ['too old', { [SIGNATURE_HEADER]: signedQuestion(SECRET, 'x@example.test', Date.now() - 120_000).signature }, signedQuestion(SECRET, 'x@example.test', Date.now() - 120_000).body, 'POST'],
    ['signed with another secret', { [SIGNATURE_HEADER]: signedQuestion('another-secret', 'x@example.test').signature }, body, 'POST'],
    ['a GET', { [SIGNATURE_HEADER]: signature }, '', 'GET'],
  ] as const) {
    const r = await post(app.port, b, headers, method)
    t.equal(r.status, 403, `${what}: 403`)
    t.match(r.body, /ESPRA_ERR_MAIL_RECIPIENT_FORBIDDEN/)
  }

  await cluster.push(writeBuild({ 'server/index.js': `export function handle() { return 'ok' }\nexport function handleMail() {}\n` }), 'b2')
  await cluster.serving(app, 'b2')
  await waitFor('a build without acceptRecipient takes every recipient', async () => /^250 /.test((await rcpt(closed.smtpPort, ['nobody@example.test']))[0]!), 15_000)
  t.match(await rcpt(closed.smtpPort, ['nobody@example.test', 'off@example.test']), [/^250 /, /^250 /])
})
