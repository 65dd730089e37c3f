// The inbound mail sweep against the seed's real embedded datastore and task queue (LMDB) and a real local blob
// store, messages recorded by the real mail.inbound.commit op; only the sweep's clock is moved forward.
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { dedupeKey, inboundRawKey, inboundRecordKey, rawMailKey } from '../../lib/mail/inbound.js'
import type { InboundEntry } from '../../lib/mail/inbound-batch.js'
import type { InboundRecord } from '../../lib/mail/inbound-record.js'
import { createLocalBlobStore } from '../../lib/storage/local-blob-store.js'
import type { DatastoreValue } from '../../lib/storage/datastore.js'
import type { MetaPeer } from '../../lib/transport/meta-server.js'
import { openEmbeddedDatastore } from '../../seed/datastore-embedded.js'
import { mailInboundHandlers } from '../../seed/mail-inbound-ops.js'
import { createInboundSweep, mailSweepInterval } from '../../seed/mail-inbound-sweep.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { captureLog } from '../helpers/meta.js'
import { testDir } from '../helpers/temp-dir.js'

const HOUR = 3_600_000
const WINDOW = 24 * HOUR
const RETENTION = 7 * 24 * HOUR
const FAILED_RETENTION = 30 * 24 * HOUR

async function open(t: Test) {
  const dir = testDir('espra-mail-sweep-')
  const datastore = await openEmbeddedDatastore({ dir })
  const queue = await openEmbeddedTaskQueue({ dir })
  const blobs = await createLocalBlobStore(join(dir, 'blobs'))
  t.teardown(async () => {
    await queue.close()
    await datastore.close()
    await blobs.close()
  })
  const handler = new Map(mailInboundHandlers(datastore, queue)).get('mail.inbound.commit')!
  const commit = async (entries: InboundEntry[]) => (await handler({ windowMs: WINDOW, entries }, {} as MetaPeer) as { results: { id: string; duplicate: boolean }[] }).results
  let clock = Date.now()
  const { log, lines } = captureLog('info')
  const sweep = createInboundSweep({ datastore, tasks: queue, blobs, log, retentionMs: RETENTION, failedRetentionMs: FAILED_RETENTION, dedupeWindowMs: () => WINDOW, now: () => clock })
  const record = async (id: string) => (await datastore.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null
  /** The record once step 4 (after the op's answer) has named its task. */
  const named = async (id: string): Promise<InboundRecord> => {
    for (;;) {
      const r = await record(id)
      if (r !== null && r.task !== null) return r
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const note = (r: InboundRecord, over: Partial<InboundRecord>) => datastore.put('mailInbound', inboundRecordKey(r.id), { ...r, ...over } as unknown as DatastoreValue)
  return { datastore, queue, blobs, commit, sweep, record, named, note, lines, at: (ms: number) => (clock = ms) }
}

let n = 0
function entry(messageId: string, over: Partial<InboundEntry> = {}): InboundEntry {
  const at = Date.now()
  const id = `m${at.toString(36)}${(++n).toString(16).padStart(12, '0')}`
  const bytes = Buffer.from(`Message-ID: <${messageId}>\r\n\r\nhello ${n}\r\n`)
  const sha256 = messageId.padEnd(64, '0').replace(/[^0-9a-f]/g, 'a').slice(0, 64)
  return {
    id, at, raw: { key: rawMailKey(id, at), size: bytes.length, sha256, store: 'ds' }, bytes,
    envelope: { from: 'a@sender.test', to: ['b@example.test'], remoteAddress: '127.0.0.1', helo: 'client.test' },
    messageId, auth: null, ...over,
  }
}

t.test('handled and failed messages go after their retention, with their bytes and dedupe records; pending and unqueued ones stay', async (t) => {
  const s = await open(t)
  const t0 = Date.now()
  // A large message's bytes are a blob (written here as the mail node's group commit would have).
  const big = entry('big@x')
  const bigRaw = { ...big.raw, store: undefined }
  await s.blobs.put(big.raw.key, Buffer.from('x'.repeat(100)))
  const [handled, failed, pending, unqueued] = [entry('handled@x'), entry('failed@x'), entry('pending@x'), entry('unqueued@x')]
  const bigEntry: InboundEntry = { ...big, raw: bigRaw, bytes: undefined }
  await s.commit([handled, failed, pending, unqueued, bigEntry])
  const recs = await Promise.all([handled, failed, pending, unqueued, bigEntry].map((e) => s.named(e.id)))
  await s.note(recs[0]!, { handledAt: t0 + 1000 })
  await s.note(recs[4]!, { handledAt: t0 + 1000 })
  await s.note(recs[3]!, { task: null })
  // The failed one's handoff: its last attempt failed, a dead letter.
  for (;;) {
    const leased = await s.queue.lease({ max: 10, leaseMs: 60_000 })
    await s.queue.settle(leased.map((l) => (l.id === recs[1]!.task
      ? { id: l.id, attempt: l.attempt, result: 'failed' as const, error: 'no', retryInMs: 0 }
      : { id: l.id, attempt: l.attempt, result: 'released' as const })))
    if ((await s.queue.counts()).dead === 1) break
  }
  const dead = (await s.queue.deadLetters()).tasks[0]!
  t.equal(dead.id, recs[1]!.task, 'a dead letter')

  s.at(t0 + RETENTION - 60_000)
  t.same(await s.sweep.pass(), { handled: 0, failed: 0, dedupe: 0 }, 'nothing before the retention')
  s.at(t0 + RETENTION + 2000)
  t.same(await s.sweep.pass(), { handled: 2, failed: 0, dedupe: 0 }, 'the handled ones after it')
  t.equal(await s.record(handled.id), null, 'record removed')
  t.equal(await s.datastore.get('mailInbound', inboundRawKey(handled.id)), null, 'its bytes removed')
  t.equal(await s.datastore.get('mailInbound', dedupeKey('handled@x', handled.raw.sha256, handled.envelope.to)), null, 'its dedupe record removed')
  t.equal(await s.blobs.head(big.raw.key), null, 'a large one: its blob removed')
  t.ok(await s.record(failed.id), 'the failed one is kept for --failed and retry')

  s.at(dead.failedAt + FAILED_RETENTION + 1000)
  t.same(await s.sweep.pass(), { handled: 0, failed: 1, dedupe: 0 }, 'the failed one after its own retention')
  t.equal(await s.record(failed.id), null)
  t.equal(await s.datastore.get('mailInbound', inboundRawKey(failed.id)), null)
  t.same((await s.queue.deadLetters()).tasks, [], 'its dead letter is dropped with it')
  // Deleted (the queue's deleteDead), not made ready: no app node ever leases it.
  t.equal(await s.queue.retry(dead.id), false, 'the dead letter is gone from the queue, not only from the dead letters')
  const again = await s.queue.lease({ max: 10, leaseMs: 60_000 })
  t.notOk(again.some((l) => l.id === dead.id), 'the dead letter is not ready again')
  t.ok(await s.record(pending.id), 'pending: kept')
  t.ok(await s.record(unqueued.id), 'unqueued: kept')
  t.ok(await s.datastore.get('mailInbound', inboundRawKey(pending.id)), 'with its bytes')
  t.same(s.sweep.totals, { handled: 2, failed: 1, dedupe: 0 })
  t.match(s.lines.find((l) => /inbound mail swept/.test(l.msg)), { handled: 2, failed: 0, dedupe: 0 }, 'a pass that removed something says so')
})

t.test('never inside the dedupe window: a retry there is still recognised; a key a later message took over is put back', async (t) => {
  const s = await open(t)
  const t0 = Date.now()
  const first = entry('same@x')
  await s.commit([first])
  const rec = await s.named(first.id)
  // Handled at once, with a retention far shorter than the window (the window wins).
  const short = createInboundSweep({ datastore: s.datastore, tasks: s.queue, blobs: s.blobs, log: captureLog('info').log, retentionMs: 1000, failedRetentionMs: 1000, dedupeWindowMs: () => WINDOW, now: () => t0 + WINDOW - 60_000 })
  await s.note(rec, { handledAt: t0 })
  t.same(await short.pass(), { handled: 0, failed: 0, dedupe: 0 }, 'kept inside the window')
  const retry = entry('same@x')
  t.same(await s.commit([retry]), [{ id: first.id, duplicate: true }], 'the retry gets the first id')

  // The dedupe key names another message (a resend after the window took it over): the sweep leaves it.
  const key = dedupeKey('same@x', first.raw.sha256, first.envelope.to)
  await s.datastore.put('mailInbound', key, { id: 'mlater00000000', at: t0 + WINDOW })
  await s.datastore.put('mailInbound', inboundRecordKey('mlater00000000'), { ...rec, id: 'mlater00000000', at: t0 + WINDOW, handledAt: null } as unknown as DatastoreValue)
  s.at(t0 + WINDOW + RETENTION + 1000)
  t.same(await s.sweep.pass(), { handled: 1, failed: 0, dedupe: 0 })
  t.same(await s.datastore.get('mailInbound', key), { id: 'mlater00000000', at: t0 + WINDOW }, 'the later message keeps its key')
  // A stray dedupe record (its message gone, e.g. removed by hand; the window past) goes too.
  await s.datastore.delete('mailInbound', inboundRecordKey('mlater00000000'))
  s.at(t0 + 2 * WINDOW + 1000)
  t.same(await s.sweep.pass(), { handled: 0, failed: 0, dedupe: 1 })
  t.equal(await s.datastore.get('mailInbound', key), null)
})

t.test('a pass is bounded: one page of records, the next pass goes on from there and round again', async (t) => {
  const s = await open(t)
  const t0 = Date.now()
  const entries = Array.from({ length: 1200 }, (_, i) => entry(`bulk${i}@x`))
  for (let i = 0; i < entries.length; i += 200) await s.commit(entries.slice(i, i + 200))
  for (const e of entries) await s.note({ ...(await s.named(e.id)) }, { handledAt: t0 })
  s.at(t0 + RETENTION + 1000)
  t.same(await s.sweep.pass(), { handled: 1000, failed: 0, dedupe: 0 }, 'the first page')
  t.same(await s.sweep.pass(), { handled: 200, failed: 0, dedupe: 0 }, 'the rest')
  t.same(await s.sweep.pass(), { handled: 0, failed: 0, dedupe: 0 }, 'round again: nothing left')
  t.equal((await s.datastore.list('mailInbound', { prefix: 'in/' })).entries.length, 0)
  t.equal((await s.datastore.list('mailInbound', { prefix: 'raw/' })).entries.length, 0)
  t.equal((await s.datastore.list('mailInbound', { prefix: 'dedupe/' })).entries.length, 0)
})

t.test('the sweep runs every quarter of the shorter retention, from 1 s to a minute', async (t) => {
  t.equal(mailSweepInterval(RETENTION, FAILED_RETENTION), 60_000)
  t.equal(mailSweepInterval(8000, 20_000), 2000)
  t.equal(mailSweepInterval(1000, 1000), 1000)
})
