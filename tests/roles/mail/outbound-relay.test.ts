// Outbound mail through real processes: a seed, an app node whose build calls ctx.sendMail, a mail node delivering
// through --smtp-relay to a real smtp-server this test starts (and answers as each case needs). Nothing is mocked.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { send } from '../../helpers/http.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let ctx
export function init(c) { ctx = c }
export function handleMailEvent(e) { appendFileSync(join(ctx.config.settings.dir, 'events.log'), JSON.stringify(e) + '\\n') }
export async function handle(req) {
  if (req.path !== '/send') return 'ok'
  const m = req.json()
  // A body bigger than --max-body lets the app build: the test asks for it by size.
  if (m.bigText) m.text = 'x'.repeat(m.bigText), delete m.bigText
  try {
    return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: await ctx.sendMail(m) }) }
  } catch (err) {
    return { status: 400, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: err.code, message: err.message }) }
  }
}
`

t.test('outbound mail through a relay', async (t) => {
  const cluster = await startAppCluster(t)
  // tmp@: 451 on its first two offers, then taken; hard@: 550 5.1.1 always; everyone else taken.
  const receiver = await startReceiver({
    rcpt: (address, n) => (address.startsWith('tmp@') && n <= 2 ? [451, '4.3.0 try again later'] : address.startsWith('hard@') ? [550, '5.1.1 no such user here'] : null),
  })
  t.teardown(() => receiver.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s',
    'smtp-relay': `smtp://127.0.0.1:${receiver.port}`, 'mail-retry-base': '300ms', 'mail-retry-max': '1s', 'mail-hostname': 'mx.espra.test',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const eventsDir = testDir('espra-mail-events-')
  const app = await cluster.startApp({ children: 1, threads: 1, 'app-settings': JSON.stringify({ dir: eventsDir }) })
  const events = (): { message: string; type: string; rcpts?: string[]; detail?: string; messageId: string }[] => {
    try {
      return readFileSync(join(eventsDir, 'events.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
    } catch {
      return []
    }
  }
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')

  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const record = async (id: string): Promise<OutRecord> => {
    const r = (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord | null
    if (r === null) throw new Error(`no record out/${id}`)
    return r
  }
  const sendMail = async (message: unknown) => {
    const r = await send({ host: '127.0.0.1', port: app.port, path: '/send', method: 'POST', headers: { 'content-type': 'application/json' } }, JSON.stringify(message))
    return { status: r.status, body: JSON.parse(r.body) as { id?: string; code?: string; message?: string } }
  }

  t.test('ctx.sendMail: delivered once, with the headers asked for and bcc only in the envelope', async (t) => {
    const r = await sendMail({ from: { name: 'Shop', address: 'shop@espra.test' }, to: 'ann@dest.test', bcc: ['hidden@dest.test'], subject: 'Your order', text: 'Thanks!', headers: { 'X-Order': '42' }, attachments: [{ filename: 'a.txt', content: 'hello file' }] })
    t.equal(r.status, 200, JSON.stringify(r.body))
    t.match(r.body.id, /^o[0-9a-z]+$/)
    const got = await waitFor('delivered', () => receiver.received.find((m) => m.raw.toString().includes(`<${r.body.id}@espra.test>`)), 20_000)
    t.equal(got.from, 'shop@espra.test')
    t.same(got.to.sort(), ['ann@dest.test', 'hidden@dest.test'], 'one transaction for the domain: to and bcc')
    const text = got.raw.toString()
    t.match(text, /^Subject: Your order\r$/m)
    t.match(text, /^X-Order: 42\r$/m)
    t.notMatch(text, /hidden@dest\.test/, 'bcc is not in the headers')
    t.match(text, /filename=a\.txt/)
    const rec = await waitFor('record says delivered', async () => {
      const x = await record(r.body.id!)
      return x.domains['dest.test']?.state === 'done' ? x : undefined
    })
    t.same(rec.domains['dest.test']!.delivered.sort(), ['ann@dest.test', 'hidden@dest.test'])
    t.same(rec.events.map((e) => e.type), ['queued', 'delivered'])
    t.match(rec.events[1]!.detail, /^127\.0\.0\.1: 250 /, 'the remote answer is kept')
  })

  t.test('a 4xx is retried on the schedule until it is taken', async (t) => {
    const r = await sendMail({ from: 'shop@espra.test', to: 'tmp@dest.test', subject: 'later', text: 'x' })
    t.equal(r.status, 200)
    await waitFor('delivered after two 451s', () => receiver.received.find((m) => m.to.includes('tmp@dest.test')), 20_000)
    t.equal(receiver.offered.get('tmp@dest.test'), 3)
    const rec = await waitFor('record done', async () => {
      const x = await record(r.body.id!)
      return x.domains['dest.test']?.state === 'done' ? x : undefined
    })
    t.same(rec.events.map((e) => e.type), ['queued', 'deferred', 'deferred', 'delivered'])
    t.match(rec.events[1], { detail: /^451 4\.3\.0 try again later/, rcpts: ['tmp@dest.test'] })
    t.ok(rec.events[1]!.next! > rec.events[1]!.at, 'deferred says when the next attempt is')
    t.equal(receiver.received.filter((m) => m.to.includes('tmp@dest.test')).length, 1, 'delivered once')
  })

  t.test('a 5xx bounces to the sender (RFC 3464) and suppresses the address; the next message to it fails fast', async (t) => {
    const r = await sendMail({ from: 'shop@espra.test', to: ['hard@dest.test', 'ok2@dest.test'], subject: 'will bounce', text: 'x' })
    t.equal(r.status, 200)
    const bounce = await waitFor('bounce delivered to the sender', () => receiver.received.find((m) => m.to.includes('shop@espra.test') && m.from === ''), 20_000)
    const text = bounce.raw.toString()
    t.match(text, /Content-Type: multipart\/report; report-type=delivery-status/)
    t.match(text, /^From: Mail Delivery System <MAILER-DAEMON@mx\.espra\.test>\r$/m)
    t.match(text, /Final-Recipient: rfc822; hard@dest\.test\r\nAction: failed\r\nStatus: 5\.1\.1/)
    t.match(text, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user here/)
    t.match(text, new RegExp(`Message-ID: <${r.body.id}@espra\\.test>`), 'the original headers are attached')
    t.notMatch(text, /ok2@dest\.test.*Action: failed/s, 'the delivered recipient is not in the bounce')
    const rec = await record(r.body.id!)
    t.same(rec.domains['dest.test']!.failed, ['hard@dest.test'])
    t.same(rec.domains['dest.test']!.delivered, ['ok2@dest.test'])
    t.ok(rec.events.some((e) => e.type === 'bounced' && e.rcpts?.[0] === 'hard@dest.test'))
    const sup = await ds.get('mailSuppression', 'hard@dest.test')
    t.match(sup, { address: 'hard@dest.test', message: r.body.id, reason: /^550 5\.1\.1/ })

    const offers = receiver.offered.get('hard@dest.test')
    const again = await sendMail({ from: 'shop@espra.test', to: 'HARD@dest.test', subject: 'again', text: 'x' })
    t.equal(again.status, 200, 'queued (the suppression shows in its events)')
    const rec2 = await waitFor('suppressed event', async () => {
      const x = await record(again.body.id!)
      return x.events.some((e) => e.type === 'suppressed') ? x : undefined
    }, 20_000)
    t.equal(rec2.domains['dest.test']!.state, 'done')
    t.equal(receiver.offered.get('hard@dest.test'), offers, 'the relay never heard of it')
    t.notOk(rec2.events.some((e) => e.type === 'bounced'), 'no second bounce')
  })

  t.test('bad input is refused at once with a coded error naming the field; nothing is queued', async (t) => {
    const before = receiver.received.length
    const cases: [unknown, string, RegExp][] = [
      [{ from: 'a@espra.test', to: 'b@dest.test', subject: 'hi\r\nBcc: victim@evil.test' }, 'ESPRA_ERR_MAIL_HEADER_INJECTION', /^subject holds CR, LF or NUL/],
      [{ from: 'a@espra.test', to: 'b@dest.test\nX: y' }, 'ESPRA_ERR_MAIL_HEADER_INJECTION', /^to holds/],
      [{ from: 'a@espra.test', to: 'b@dest.test', headers: { 'X-A': 'v\r\nBcc: x@evil.test' } }, 'ESPRA_ERR_MAIL_HEADER_INJECTION', /headers\["X-A"\]/],
      [{ from: { name: 'Evil\nBcc: x@y.test', address: 'a@espra.test' }, to: 'b@dest.test' }, 'ESPRA_ERR_MAIL_HEADER_INJECTION', /^from\.name/],
      [{ from: 'a@espra.test', to: 'b@dest.test', attachments: [{ filename: 'x\r\n.txt', content: 'x' }] }, 'ESPRA_ERR_MAIL_HEADER_INJECTION', /attachments\[0\]\.filename/],
      [{ from: 'not-an-address', to: 'b@dest.test' }, 'ESPRA_ERR_MAIL_INVALID', /^from must be an address/],
      [{ from: 'a@espra.test', to: 'b@@dest.test' }, 'ESPRA_ERR_MAIL_INVALID', /^to\[0\] must be an address/],
      [{ from: 'a@espra.test' }, 'ESPRA_ERR_MAIL_INVALID', /^to must be at least one recipient/],
      [{ from: 'a@espra.test', to: Array.from({ length: 101 }, (_, i) => `r${i}@dest.test`) }, 'ESPRA_ERR_MAIL_INVALID', /at most 100 recipients/],
      [{ from: 'a@espra.test', to: 'b@dest.test', headers: { From: 'x@y.test' } }, 'ESPRA_ERR_MAIL_INVALID', /use the message's own fields/],
      [{ from: 'a@espra.test', to: 'b@dest.test', sender: 'x' }, 'ESPRA_ERR_MAIL_INVALID', /^sender must be absent/],
      [{ from: 'a@espra.test', to: 'b@dest.test', bigText: 11 * 1024 * 1024 }, 'ESPRA_ERR_MAIL_TOO_LARGE', /over --mail-max-size \(10485760 bytes/],
    ]
    for (const [message, code, text] of cases) {
      const r = await sendMail(message)
      t.equal(r.status, 400)
      t.equal(r.body.code, code, JSON.stringify(message).slice(0, 120))
      t.match(r.body.message, text)
    }
    const ok = await sendMail({ from: 'a@espra.test', to: 'fine@dest.test', subject: 'after', text: 'the app still works' })
    t.equal(ok.status, 200)
    await waitFor('the next message delivered', () => receiver.received.length > before, 20_000)
    t.equal(receiver.received.filter((m) => m.raw.toString().includes('evil.test')).length, 0, 'nothing injected reached the relay')
  })

  t.test('admin mail send prints the id alone on its last line and the mail is delivered', async (t) => {
    const r = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'ops@espra.test', '--to', 'cli1@dest.test,cli2@other.test', '--subject', 'from the CLI', '--text', 'hello'])
    t.equal(r.code, 0, r.stderr)
    const id = r.stdout.trim().split('\n').pop()!
    t.match(id, /^o[0-9a-z]+$/)
    await waitFor('both domains delivered', () => ['cli1@dest.test', 'cli2@other.test'].every((a) => receiver.received.some((m) => m.to.includes(a))), 20_000)
    const rec = await waitFor('record done', async () => {
      const x = await record(id)
      return Object.values(x.domains).every((d) => d.state === 'done') ? x : undefined
    })
    t.same(Object.keys(rec.domains).sort(), ['dest.test', 'other.test'], 'one delivery per recipient domain')
    const bad = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'ops@espra.test', '--to', 'x@dest.test', '--subject', 'a\r\nBcc: y@evil.test'])
    t.equal(bad.code, 1)
    t.match(bad.stderr, /^espra-node: ESPRA_ERR_MAIL_HEADER_INJECTION: --subject: subject holds CR, LF or NUL/)
    const noFrom = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--to', 'x@dest.test'])
    t.not(noFrom.code, 0)
    t.match(noFrom.stderr, /--from: is required/)
  })
  t.test('handleMailEvent: the app is given every event through the task queue', async (t) => {
    const all = await waitFor('events reached the app', () => {
      const e = events()
      return e.some((x) => x.type === 'suppressed') && e.filter((x) => x.type === 'delivered').length >= 4 ? e : undefined
    }, 20_000)
    const first = all.filter((e) => e.messageId.endsWith('@espra.test') && e.type !== 'bounced').slice(0, 2)
    t.same(first.map((e) => e.type), ['queued', 'delivered'], 'the first message: queued, then delivered')
    t.ok(all.some((e) => e.type === 'deferred' && /^451 /.test(e.detail ?? '')), 'deferred with the reason')
    t.ok(all.some((e) => e.type === 'bounced' && e.rcpts?.[0] === 'hard@dest.test'), 'bounced')
    t.ok(all.some((e) => e.type === 'suppressed' && e.rcpts?.[0] === 'HARD@dest.test'), 'suppressed')
  })
  t.equal((await health(mail.port)).status, 200)
})
