// Inbound mail through real processes: a seed, a mail node with its SMTP port shared by its children, nodemailer
// (and a raw socket) as the client, and an app node whose build exports handleMail. Nothing is mocked.
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { admin, killHard, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { storedRaw } from './stored-raw.js'
import { freePort, health, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { scrape } from '../../helpers/prom-text.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id, to: m.envelope.to, from: m.envelope.from, subject: m.subject, text: m.text, attachments: m.attachments, messageId: m.messageId, raw: m.raw }) + '\\n')
}
`

interface Handled { id: string; to: string[]; from: string; subject: string; text: string | null; messageId: string | null; raw: { key: string; size: number; sha256: string; store?: string }; attachments: { key: string; filename: string; size: number; sha256: string; type: string }[] }

const handled = (dir: string): Handled[] => {
  try {
    return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Handled)
  } catch {
    return []
  }
}

/** Speaks SMTP line by line: each command's reply (the last line of a multi-line one). */
async function dialog(port: number, lines: string[]): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1')
  let buffer = ''
  const waiters: ((line: string) => void)[] = []
  const replies: string[] = []
  socket.on('data', (chunk) => {
    buffer += chunk.toString('latin1')
    let i
    while ((i = buffer.indexOf('\r\n')) !== -1) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 2)
      if (/^\d{3} /.test(line)) {
        replies.push(line)
        waiters.shift()?.(line)
      }
    }
  })
  const next = () => new Promise<string>((resolve) => (replies.length > 0 ? resolve(replies.shift()!) : waiters.push((l) => (replies.shift(), resolve(l)))))
  const out = [await next()]
  for (const line of lines) {
    socket.write(`${line}\r\n`)
    out.push(await next())
  }
  socket.destroy()
  return out
}

t.test('inbound mail', async (t) => {
  const top = t
  const cluster = await startAppCluster(t)
  const blobDir = cluster.blobDir
  const smtpPort = await freePort()
  const mailFlags = {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test,Other.Test',
    'mail-max-recipients': 3, 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s',
    // The cluster's blob store (builds, messages, attachments), as every node of a cluster shares S3.
    'blob-dir': blobDir,
  }
  let mail: StartedNode = await startNode(t, 'mail', mailFlags)
  let app: StartedNode | undefined
  const appDir = testDir('espra-mail-app-')
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const transport = () => nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, pool: false })

  t.test('health on the HTTP port, SMTP on its own', async (t) => {
    const h = await health(mail.port)
    t.equal(h.status, 200)
    t.equal(h.body['role'], 'mail')
    const nodes = await admin(['nodes', '--json', '--seed', cluster.seedAddress])
    t.match((JSON.parse(nodes.stdout) as { id: string; smtpPort?: number }[]).find((n) => n.id === 'mail-1'), { role: 'mail', smtpPort }, 'admin nodes --json shows the SMTP port')
    const greeting = await dialog(smtpPort, ['EHLO client.test', 'QUIT'])
    t.match(greeting[0], /^220 /)
    t.match(greeting[1], /^250 /)
  })

  t.test('recipients: allowed domains only, at RCPT; bounded per transaction; bad addresses refused', async (t) => {
    const ok = await transport().sendMail({ from: 'a@sender.test', to: 'bob@example.test', subject: 'hi', text: 'hello' })
    t.match(ok.response, /^250 .*queued as m[0-9a-z]+/)
    t.same(ok.accepted, ['bob@example.test'])
    const refused = await transport().sendMail({ from: 'a@sender.test', to: 'bob@elsewhere.test', subject: 'x', text: 'x' }).catch((err: { responseCode?: number; response?: string }) => err)
    t.equal((refused as { responseCode?: number }).responseCode, 550, 'a foreign domain is refused')
    t.match((refused as { response?: string }).response, /^550 5\.1\.1/)
    const many = await transport().sendMail({ from: 'a@sender.test', to: ['1@example.test', '2@OTHER.test', '3@example.test', '4@example.test', '5@example.test'], subject: 'm', text: 'm' })
    t.equal(many.accepted.length, 3, 'the first three recipients are taken')
    t.equal(many.rejected.length, 2)
    t.match((many.rejectedErrors ?? []).map((e) => (e as { responseCode?: number }).responseCode), [452, 452])
    const replies = await dialog(smtpPort, ['EHLO c.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<no-at-sign>', 'RCPT TO:<x@@example.test>', 'RCPT TO:<ok@example.test>', 'QUIT'])
    t.match(replies[3], /^5(01|53) /, 'an address without @ is refused')
    t.match(replies[4], /^5(01|53) /, 'a malformed address is refused')
    t.match(replies[5], /^250 /, 'the transaction goes on')
  })

  t.test('10,000 recipients pipelined in one write: the first ones taken, every other one 452, the node unharmed', async (t) => {
    const socket = net.connect(smtpPort, '127.0.0.1')
    let heard = ''
    socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
    await waitFor('greeting', () => heard.includes('220 '))
    socket.write('EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n' + [...Array(10_000).keys()].map((i) => `RCPT TO:<r${i}@example.test>\r\n`).join('') + 'QUIT\r\n')
    await waitFor('every command answered', () => /^221 /m.test(heard), 60_000)
    const codes = heard.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3))
    // 220, EHLO's 250, MAIL's 250, then one reply per RCPT, then 221.
    const rcpt = codes.slice(3, -1)
    t.equal(rcpt.length, 10_000)
    t.equal(rcpt.filter((c) => c === '250').length, 3, '--mail-max-recipients (3 here) taken')
    t.equal(rcpt.filter((c) => c === '452').length, 9_997, 'the rest 452')
    socket.destroy()
    t.equal((await health(mail.port)).status, 200)
  })

  t.test('malformed commands and a reset during DATA leave the node running', async (t) => {
    const replies = await dialog(smtpPort, ['EHLO c.test', 'BLAH', 'MAIL FROM:garbage<<', 'RCPT TO:<a@example.test>', 'DATA', 'QUIT'])
    t.match(replies[2], /^5\d\d /, 'unknown command')
    t.match(replies[3], /^5\d\d /, 'bad MAIL FROM')
    t.match(replies[4], /^503 /, 'RCPT before MAIL')
    const socket = net.connect(smtpPort, '127.0.0.1')
    let heard = ''
    socket.on('data', (d: Buffer) => (heard += d.toString('latin1')))
    await waitFor('greeting', () => heard.includes('220 '))
    socket.write('EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n')
    await waitFor('DATA accepted', () => heard.includes('354 '))
    socket.write('Subject: cut\r\n\r\n' + 'x'.repeat(100_000))
    socket.resetAndDestroy()
    await new Promise((r) => setTimeout(r, 300))
    const again = await transport().sendMail({ from: 'a@sender.test', to: 'after@example.test', subject: 'after the reset', text: 'still here' })
    t.match(again.response, /^250 /)
    // Regression: an 'error' on the store's stream after the client reset once killed the child (smtp-server#229's kind).
    for (const l of mail.logs.filter((l) => l.level === 'fatal' || /crashed/.test(l.msg))) t.comment(JSON.stringify(l).slice(0, 600))
    t.equal(mail.childPids().length, 2, 'no child crashed')
    t.notOk(mail.logs.some((l) => /child \d+ crashed/.test(l.msg)))
  })

  t.test('250 is durable: kill -9 after it, the app gets the message; a retry is not handed twice', async (t) => {
    const raw = 'From: Ann <ann@sender.test>\r\nTo: carl@example.test\r\nSubject: durable\r\nMessage-ID: <dedupe-1@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody text\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=data.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n' + Buffer.from('attached bytes').toString('base64') + '\r\n--b--\r\n'
    const first = await transport().sendMail({ envelope: { from: 'ann@sender.test', to: ['carl@example.test'] }, raw })
    const id = /queued as (m[0-9a-z]+)/.exec(first.response)![1]
    await killHard(mail)
    // On the outer test: this node outlives this subtest.
    mail = await startNode(top, 'mail', mailFlags)
    await waitFor('mail registered again', async () => (await health(mail.port)).body['seedConnected'] === true)
    // The client lost our 250 and sends the same message again.
    const retry = await transport().sendMail({ envelope: { from: 'ann@sender.test', to: ['carl@example.test'] }, raw })
    t.match(retry.response, new RegExp(`queued as ${id}$`), 'the retry is answered with the first id')

    // No app node ran so far: the handoffs waited in the queue. Now one comes.
    const dir = appDir
    app = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
    await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
    await cluster.serving(app, 'b1')
    await waitFor('the durable message handled', () => handled(dir).some((m) => m.id === id), 30_000)
    const got = handled(dir).filter((m) => m.id === id)
    t.equal(got.length, 1, 'handed once')
    t.same(got[0]!.to, ['carl@example.test'])
    t.equal(got[0]!.subject, 'durable')
    t.equal(got[0]!.messageId, 'dedupe-1@sender.test')
    t.match(got[0]!.text, /body text/)
    t.equal(got[0]!.attachments.length, 1)
    const att = got[0]!.attachments[0]!
    t.match(att, { filename: 'data.bin', size: 14, type: 'application/octet-stream' })
    const blobs = await createLocalBlobStore(blobDir)
    const object = await blobs.get(att.key)
    const chunks: Buffer[] = []
    for await (const c of object!.body) chunks.push(c as Buffer)
    t.equal(Buffer.concat(chunks).toString(), 'attached bytes', 'the attachment is in the blob store')
    await blobs.close()
    // Earlier messages (sent before any app node ran) were handed too.
    await waitFor('earlier messages handled', () => handled(dir).some((m) => m.subject === 'after the reset'), 30_000)
    // Let the queue settle, then check nothing came twice.
    await new Promise((r) => setTimeout(r, 1500))
    const ids = handled(dir).map((m) => m.id)
    t.equal(new Set(ids).size, ids.length, 'no message handed twice')
  })

  t.test('a message up to 48 KB rides in the datastore, a larger one in the blob store: both are handed whole', async (t) => {
    const small = 's'.repeat(70) + '\r\n'
    const big = 'b'.repeat(70) + '\r\n'
    const sent = await Promise.all([
      transport().sendMail({ from: 'ann@sender.test', to: 'carl@example.test', subject: 'small one', text: small.repeat(400) }),
      transport().sendMail({ from: 'ann@sender.test', to: 'carl@example.test', subject: 'big one', text: big.repeat(1000) }),
    ])
    const [smallId, bigId] = sent.map((s) => /queued as (m[0-9a-z]+)/.exec(s.response)![1]!)
    await waitFor('both handled', () => [smallId, bigId].every((id) => handled(appDir).some((m) => m.id === id)), 30_000)
    const got = (id: string) => handled(appDir).find((m) => m.id === id)!
    t.equal(got(smallId!).raw.store, 'ds', 'the small one was kept in the datastore')
    t.ok(got(smallId!).raw.size < 48 * 1024)
    t.equal(got(smallId!).text!.replace(/\r?\n/g, '\n'), small.replace('\r\n', '\n').repeat(400), 'its text whole')
    t.equal(got(bigId!).raw.store, undefined, 'the big one in the blob store')
    t.ok(got(bigId!).raw.size > 48 * 1024)
    t.equal(got(bigId!).text!.replace(/\r?\n/g, '\n'), big.replace('\r\n', '\n').repeat(1000), 'its text whole')
    const stored = await storedRaw(cluster)
    t.ok(stored.datastore.includes(smallId!) && !stored.blob.includes(smallId!), 'no file for the small one')
    t.ok(stored.blob.includes(bigId!) && !stored.datastore.includes(bigId!), 'a file for the big one, no datastore copy')
    // The handoffs' claims and outcomes: over the app child's own seed link, once it is up (roles/app/handoff-seed-link.ts).
    const viaLink = (await scrape(app!.metricsPort)).find('espra_app_seed_requests_total', { via: 'link' }).reduce((n, s) => n + s.value, 0)
    t.ok(viaLink >= 1, `the app child sent handoff ops over its own seed link (${viaLink})`)
  })

  t.test('a build without handleMail fails the handoff, which is retried until a build has it', async (t) => {
    await cluster.push(writeBuild({ 'server/index.js': `export function handle() { return 'ok' }\nexport function handleTask() {}\n` }), 'b2')
    await cluster.serving(app!, 'b2')
    const info = await transport().sendMail({ from: 'a@sender.test', to: 'late@example.test', subject: 'waits for handleMail', text: 'x' })
    const id = /queued as (m[0-9a-z]+)/.exec(info.response)![1]
    const failed = await app!.waitForLog((l) => /failed; retrying/.test(l.msg) && l['name'] === 'espra.mail', 'the handoff failed and is retried', 30_000)
    t.match(failed['error'], /exports no handleMail/)
    t.notOk(handled(appDir).some((m) => m.id === id), 'not handled yet')
    await cluster.push(writeBuild({ 'server/index.js': APP }), 'b3')
    await cluster.serving(app!, 'b3')
    await waitFor('handled once a build has handleMail', () => handled(appDir).some((m) => m.id === id), 60_000)
    t.equal(handled(appDir).filter((m) => m.id === id).length, 1)
  })
})
