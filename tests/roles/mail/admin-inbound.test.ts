// `admin mail inbound [--failed] [--json]` and `retry <id>` on real processes: a seed, a mail node, then an app node
// whose handleMail fails for some messages until they are dead letters, then a build that takes them.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

const app = (failing: boolean) => `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  if (${failing} && m.subject === 'bad') throw new Error('cannot file this one')
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id, subject: m.subject }) + '\\n')
}
`

interface Listed { pending: number; failed: number; unqueued: number; messages: { id: string; state: string; from: string; to: string[]; attempts: number; lastError: string | null; task: string | null }[] }

t.test('admin mail inbound lists what is not handed yet, and retry hands a failed one again', async (t) => {
  const cluster = await startAppCluster(t, { 'task-backoff': '20ms' })
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir,
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const seed = ['--seed', cluster.seedAddress]
  const list = async (...args: string[]): Promise<Listed> => {
    const r = await admin(['mail', 'inbound', '--json', ...args, ...seed])
    if (r.code !== 0) throw new Error(r.stderr)
    return JSON.parse(r.stdout) as Listed
  }
  const empty = await admin(['mail', 'inbound', ...seed])
  t.equal(empty.code, 0)
  t.match(empty.stdout, /^\(no inbound messages waiting/, 'nothing yet')

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  const send = async (subject: string) => /queued as (m[0-9a-z]+)/.exec((await transport.sendMail({ from: 'ann@sender.test', to: ['bob@example.test', 'cy@example.test'], subject, text: 'x' })).response)![1]!
  const good = await send('good')
  const bad = await send('bad')

  // No app node yet: both wait in the queue.
  const waiting = await list()
  t.match(waiting, { pending: 2, failed: 0, unqueued: 0 })
  t.match(waiting.messages, [{ id: good, state: 'pending', from: 'ann@sender.test', to: ['bob@example.test', 'cy@example.test'], attempts: 0, lastError: null }, { id: bad, state: 'pending' }], 'oldest first')
  const table = await admin(['mail', 'inbound', ...seed])
  t.match(table.stdout, new RegExp(`^ID +STATE +RECEIVED +ATTEMPTS +FROM +TO +LAST ERROR\\n${good} +pending +\\S+ +0 +ann@sender\\.test +bob@example\\.test \\+1`), 'a table, one line per message')
  const pendingRetry = await admin(['mail', 'inbound', 'retry', good, ...seed])
  t.equal(pendingRetry.code, 1)
  t.match(pendingRetry.stderr, /ESPRA_ERR_MAIL_NOT_FAILED.*is pending \(0 of 10 attempts\): it is retried by itself/, 'a pending message is not retried by hand')

  const dir = testDir('espra-mail-admin-')
  const handled = (): string[] => {
    try {
      return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id)
    } catch {
      return []
    }
  }
  const node = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.push(writeBuild({ 'server/index.js': app(true) }), 'b1')
  await cluster.serving(node, 'b1')
  await waitFor('the good one handled', () => handled().includes(good), 30_000)
  // 10 attempts 20 ms doubling: about 10 s to the dead letter.
  const failed = await waitFor('the bad one a dead letter', async () => {
    const l = await list('--failed')
    return l.messages.length === 1 ? l : undefined
  }, 60_000)
  t.match(failed, { pending: 0, failed: 1, messages: [{ id: bad, state: 'failed', attempts: 10, lastError: /cannot file this one/ }] }, '--failed: the dead letter with its last error')
  t.notOk((await list()).messages.some((m) => m.id === good), 'a handled message is not listed')
  const tasks = await admin(['tasks', '--dead', '--json', ...seed])
  t.match(JSON.parse(tasks.stdout), { dead: [{ id: failed.messages[0]!.task, name: 'espra.mail' }] }, 'the same dead letter admin tasks shows')

  const handledRetry = await admin(['mail', 'inbound', 'retry', good, ...seed])
  t.equal(handledRetry.code, 1)
  t.match(handledRetry.stderr, /ESPRA_ERR_MAIL_NOT_FAILED.*was handed to handleMail at/)
  const unknown = await admin(['mail', 'inbound', 'retry', 'm0000000000000000000', ...seed])
  t.match(unknown.stderr, /ESPRA_ERR_MAIL_NOT_FOUND/)
  const malformed = await admin(['mail', 'inbound', 'retry', '../etc', ...seed])
  t.equal(malformed.code, 2, 'a usage error')
  t.match(malformed.stderr, /^espra-node: <id>: must be an inbound message id .*got "\.\.\/etc"/)
  const badLimit = await admin(['mail', 'inbound', '--limit', '0', ...seed])
  t.equal(badLimit.code, 2)
  t.match(badLimit.stderr, /--limit: must be an integer from 1 to 100000/)

  await cluster.push(writeBuild({ 'server/index.js': app(false) }), 'b2')
  await cluster.serving(node, 'b2')
  const retried = await admin(['mail', 'inbound', 'retry', bad, ...seed])
  t.equal(retried.code, 0, retried.stderr)
  t.equal(retried.stdout, `${bad}\n`, 'prints the id')
  await waitFor('the retried one handled', () => handled().includes(bad), 30_000)
  await waitFor('nothing waiting', async () => (await list()).messages.length === 0, 15_000)
  t.equal(handled().filter((id) => id === bad).length, 1, 'handed once')
})
