// `admin mail inbound retry` of a message listed `unqueued` whose handoff is in fact queued (the seed answered before
// the record named its task, and died before it did): real processes; the crash is left as it leaves the record (its
// task id written back to null). Each message is handed once: the record names one task and only that task runs
// handleMail (roles/app/mail-handoff.ts); a task whose record is gone (swept) hands nothing.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import { inboundRecordKey } from '../../../lib/mail/inbound.js'
import type { InboundRecord } from '../../../lib/mail/inbound-record.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import type { DatastoreValue } from '../../../lib/storage/datastore.js'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

const app = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id }) + '\\n')
}
`

t.test('retry of an unqueued message that was queued after all hands it once; so does the first task that claims it', async (t) => {
  const cluster = await startAppCluster(t, { 'task-backoff': '20ms' })
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir,
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const queue = createMetaTaskQueue(client)
  const seed = ['--seed', cluster.seedAddress]
  const record = async (id: string) => (await ds.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  const send = async (subject: string) => /queued as (m[0-9a-z]+)/.exec((await transport.sendMail({ from: 'ann@sender.test', to: 'bob@example.test', subject, text: subject })).response)![1]!
  const [retried, claimed, swept] = [await send('retried'), await send('claimed'), await send('swept')]
  // No app node yet: each waits in the queue, its record naming its task (step 4, just after the 250).
  const first = await waitFor('records name their tasks', async () => {
    const rs = await Promise.all([retried, claimed, swept].map(record))
    return rs.every((r) => r?.task != null) ? rs : undefined
  })
  // The crash between the enqueue and step 4: records that do not name their (queued) tasks. One record is swept.
  for (const r of first.slice(0, 2)) await ds.put('mailInbound', inboundRecordKey(r!.id), { ...r!, task: null } as unknown as DatastoreValue)
  await ds.delete('mailInbound', inboundRecordKey(swept))
  const listed = JSON.parse((await admin(['mail', 'inbound', '--json', ...seed])).stdout) as { unqueued: number }
  t.equal(listed.unqueued, 2, 'both listed unqueued')

  const r = await admin(['mail', 'inbound', 'retry', retried, ...seed])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `${retried}\n`)
  const again = (await record(retried))!
  t.match(again.task, /^t\d+$/)
  t.not(again.task, first[0]!.task, 'the record names the task queued now')
  t.equal((await queue.counts()).ready, 4, 'two handoffs of that message are queued')

  const dir = testDir('espra-mail-unqueued-')
  const handled = (): string[] => {
    try {
      return readFileSync(join(dir, 'mail.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id)
    } catch {
      return []
    }
  }
  const node = await cluster.startApp({ 'app-settings': JSON.stringify({ dir }) })
  await cluster.push(writeBuild({ 'server/index.js': app }), 'b1')
  await cluster.serving(node, 'b1')
  await waitFor('every task settled', async () => {
    const c = await queue.counts()
    return c.ready + c.delayed + c.leased === 0
  }, 30_000)
  await waitFor('both handed', () => handled().includes(retried) && handled().includes(claimed), 15_000)
  t.same(handled().filter((id) => id === retried), [retried], 'the retried message is handed once')
  t.same(handled().filter((id) => id === claimed), [claimed], 'the unqueued one, not retried, is handed once by the task it queued')
  t.notOk(handled().includes(swept), 'a message whose record is gone is not handed')
  t.equal((await queue.counts()).dead, 0, 'no dead letters: the copies were settled done')
  t.match(await record(retried), { task: again.task, handledAt: Number }, 'the record names the task that handed it')
  t.match(await record(claimed), { task: first[1]!.task, handledAt: Number }, 'the first task claimed the record')
  t.ok(node.logs.some((l) => /settled without running: inbound message .* is handed by task/.test(l.msg)), 'the copy logged as not run')
  t.ok(node.logs.some((l) => /settled without running: inbound message .* has no record/.test(l.msg)), 'the swept one logged as not run')
  const late = await admin(['mail', 'inbound', 'retry', claimed, ...seed])
  t.equal(late.code, 1)
  t.match(late.stderr, /ESPRA_ERR_MAIL_NOT_FAILED.*was handed to handleMail/)
})
