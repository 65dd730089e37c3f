// The inbound mail sweep on real processes with short retentions: a seed (--mail-inbound-retention 2s,
// --mail-inbound-failed-retention 2s, --mail-dedupe-window 3s), a mail node and an app node whose handleMail refuses
// one message until it is a dead letter. Handled and failed messages go with their bytes (a datastore record for a
// small one, a blob for a large one) and dedupe records, a failed one with its dead letter (deleted from the queue, so
// no app node sees it again); a retry inside the window is still recognised.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import { inboundRawKey, inboundRecordKey } from '../../../lib/mail/inbound.js'
import type { InboundRecord } from '../../../lib/mail/inbound-record.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { scrape } from '../../helpers/prom-text.js'
import { testDir } from '../../helpers/temp-dir.js'

const app = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let dir
export function init(ctx) { dir = ctx.config.settings.dir }
export function handle() { return 'ok' }
export async function handleMail(m) {
  if (m.subject === 'bad') throw new Error('cannot file this one')
  appendFileSync(join(dir, 'mail.log'), JSON.stringify({ id: m.id }) + '\\n')
}
`

t.test('handled and failed inbound messages are swept after their retention, bytes and dedupe records with them', async (t) => {
  const cluster = await startAppCluster(t, { 'task-backoff': '20ms' }, { 'mail-inbound-retention': '2s', 'mail-inbound-failed-retention': '2s', 'mail-dedupe-window': '3s' })
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir, 'mail-dedupe-window': '3s',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const blobs = await createLocalBlobStore(cluster.blobDir)
  t.teardown(() => blobs.close())
  const record = async (id: string) => (await ds.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  const envelope = { from: 'ann@sender.test', to: ['bob@example.test'] }
  const raw = (subject: string, body: string) => `From: ann@sender.test\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}-${process.pid}@sender.test>\r\n\r\n${body}\r\n`
  const sendRaw = async (text: string) => /queued as (m[0-9a-z]+)/.exec((await transport.sendMail({ envelope, raw: text })).response)![1]!
  const goodRaw = raw('good', 'hello')
  const good = await sendRaw(goodRaw)
  t.equal(await sendRaw(goodRaw), good, 'a retry inside the window gets the first id')
  const big = await sendRaw(raw('big', 'x'.repeat(76).concat('\r\n').repeat(1000)))
  const bad = await sendRaw(raw('bad', 'refused'))
  const bigRecord = (await record(big))!
  t.equal(bigRecord.raw.store, undefined, 'the large one is a blob')
  t.ok(await blobs.head(bigRecord.raw.key), 'its blob is there')
  t.ok(await ds.get('mailInbound', inboundRawKey(good)), 'the small one: its bytes are a record')

  const dir = testDir('espra-mail-sweep-')
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
  await waitFor('the good ones handled', () => handled().includes(good) && handled().includes(big), 30_000)

  // 10 attempts 20 ms doubling: about 10 s to the dead letter, then 2 s more and a pass.
  await waitFor('all three swept', async () => (await Promise.all([good, big, bad].map(record))).every((r) => r === null), 90_000)
  t.equal(await ds.get('mailInbound', inboundRawKey(good)), null, 'the small one\'s bytes are gone')
  t.equal(await blobs.head(bigRecord.raw.key), null, 'the large one\'s blob is gone')
  t.same((await ds.list('mailInbound', { prefix: 'dedupe/' })).entries, [], 'no dedupe records left')
  t.same((await ds.list('mailInbound', { prefix: 'raw/' })).entries, [], 'no raw records left')
  const failed = JSON.parse((await admin(['mail', 'inbound', '--json', '--seed', cluster.seedAddress])).stdout) as { pending: number; failed: number; unqueued: number }
  t.match(failed, { pending: 0, failed: 0, unqueued: 0 }, 'admin mail inbound: nothing left')
  const m = await scrape(cluster.seed.metricsPort)
  t.equal(m.value('espra_seed_mail_inbound_swept_total', { process: 'parent', state: 'handled' }), 2, 'two handled swept')
  t.equal(m.value('espra_seed_mail_inbound_swept_total', { process: 'parent', state: 'failed' }), 1, 'one failed swept')
  t.ok(cluster.seed.logs.some((l) => /^inbound mail swept: /.test(l.msg)), 'the seed logs what it swept')
  // The failed one's dead letter goes with it: deleted, never made ready for an app node to settle.
  const tasks = createMetaTaskQueue(client)
  await waitFor('the queue empty: no dead letter left', async () => {
    const c = await tasks.counts()
    return c.dead + c.ready + c.delayed + c.leased === 0
  }, 30_000)
  t.notOk(node.logs.some((l) => new RegExp(`settled without running: inbound message ${bad} has no record`).test(l.msg)), 'no app node leased it again: it was deleted, not retried')

  // Past the window the same message is a new one again (its dedupe record went with it).
  const later = await sendRaw(goodRaw)
  t.not(later, good, 'a resend after the window and the sweep is a new message')
  await waitFor('and handed', () => handled().includes(later), 30_000)
  t.equal(handled().filter((id) => id === good).length, 1, 'the first was handed once')
})
