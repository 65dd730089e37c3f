// Group commit under kill -9: 20 clients send at once, so messages finish DATA together and are written in groups;
// the mail node (parent and children) is killed while groups are in flight. Every message that got 250 must reach
// handleMail after the restart, and a client's retry of every message that did not (the same bytes, Message-ID and
// recipients) must be taken and handed, once. Real processes, nothing mocked.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { killHard, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { openSmtp } from '../../helpers/smtp-session.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id, messageId: m.messageId }) + '\\n')
}
`
const CLIENTS = 20

const handled = (dir: string): { id: string; messageId: string }[] => {
  try {
    return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; messageId: string })
  } catch {
    return []
  }
}

/** One SMTP connection past EHLO: each command's final reply line; '(closed)' once the server is gone. */
async function smtp(port: number): Promise<{ say(data: string): Promise<string>; close(): void }> {
  const session = await openSmtp(port)
  await session.command('EHLO kill.sender.test')
  return { say: (data) => session.data(data), close: () => session.close() }
}

const message = (messageId: string) =>
  `From: <load@sender.test>\r\nTo: <in@example.test>\r\nSubject: ${messageId}\r\nMessage-ID: <${messageId}>\r\n\r\n${'group commit line of text\r\n'.repeat(200)}.\r\n`

/** Sends one message; its DATA answer, or what failed before it. */
async function send(s: Awaited<ReturnType<typeof smtp>>, messageId: string, onData: () => void): Promise<string> {
  for (const cmd of ['MAIL FROM:<load@sender.test>\r\n', 'RCPT TO:<in@example.test>\r\n', 'DATA\r\n']) {
    const answer = await s.say(cmd)
    if (!/^[23]/.test(answer)) return answer
  }
  onData()
  return s.say(message(messageId))
}

t.test('kill -9 while groups are in flight: every 250 is handed; every retry of the rest is taken and handed once', async (t) => {
  const cluster = await startAppCluster(t)
  const smtpPort = await freePort()
  const mailFlags = {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'blob-dir': cluster.blobDir, 'mail-auth': 'false',
    'smtp-max-conns-per-address': 0, 'smtp-max-messages-per-minute': 0,
  }
  let mail = await startNode(t, 'mail', mailFlags)
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)

  // Message-ID → the id its 250 named (absent: no 250).
  const accepted = new Map<string, string>()
  const unanswered: string[] = []
  let inData = 0
  let killing = false
  let killedInData = -1
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => smtp(smtpPort)))
  const load = Promise.all(clients.map(async (s, c) => {
    for (let n = 0; ; n++) {
      const messageId = `k${c}.${n}@sender.test`
      let sentData = false
      const answer = await send(s, messageId, () => {
        sentData = true
        inData++
      })
      if (sentData) inData--
      const id = /^250 .*queued as (m[0-9a-z]+)/.exec(answer)?.[1]
      if (id !== undefined) accepted.set(messageId, id)
      else if (sentData) unanswered.push(messageId)
      if (answer === '(closed)') return
      if (id === undefined && !killing) return void t.fail(`an answer other than 250 before the kill: ${answer}`)
    }
  }))
  await waitFor('60 messages taken', () => accepted.size >= 60, 60_000)
  killing = true
  killedInData = inData
  await killHard(mail)
  await load
  for (const s of clients) s.close()
  t.comment(`killed with ${killedInData} message(s) between the end of DATA and their answer; ${accepted.size} had 250, ${unanswered.length} had none`)
  t.ok(killedInData > 0, 'the kill came while messages were in flight')

  mail = await startNode(t, 'mail', mailFlags)
  await waitFor('mail registered again', async () => (await health(mail.port)).body['seedConnected'] === true)
  // The clients retry what got no answer, and (a lost 250) a few that did: the same bytes, Message-ID and recipients.
  const lost250 = [...accepted.keys()].slice(0, 5)
  const retried = new Map<string, string>()
  for (const messageId of [...unanswered, ...lost250]) {
    const s = await smtp(smtpPort)
    const answer = await send(s, messageId, () => undefined)
    s.close()
    const id = /^250 .*queued as (m[0-9a-z]+)/.exec(answer)?.[1]
    t.ok(id !== undefined, `the retry of ${messageId} is taken (${answer})`)
    if (id !== undefined) retried.set(messageId, id)
  }
  for (const messageId of lost250) t.equal(retried.get(messageId), accepted.get(messageId), `a retry after a lost 250 is answered with the first id (${messageId})`)

  const dir = testDir('espra-mail-kill-')
  const app = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const want = new Map([...accepted, ...retried])
  await waitFor('every message that got 250 handed', () => {
    const ids = new Set(handled(dir).map((m) => m.id))
    return [...want.values()].every((id) => ids.has(id))
  }, 60_000)
  // Let the queue settle, then nothing may come twice.
  await new Promise((r) => setTimeout(r, 1500))
  const all = handled(dir)
  const perMessageId = new Map<string, number>()
  for (const m of all) perMessageId.set(m.messageId, (perMessageId.get(m.messageId) ?? 0) + 1)
  t.same([...want.keys()].filter((m) => perMessageId.get(m) !== 1), [], 'every message that got 250 is handed exactly once')
  t.same(all.filter((m) => !want.has(m.messageId)), [], 'nothing handed that no 250 named')
  for (const [messageId, id] of want) {
    if (all.find((m) => m.messageId === messageId)?.id !== id) t.fail(`${messageId} handed under another id than its 250 named`)
  }
})
