/**
 * What "250 only when durable" means, in one place. For every message that
 * arrived in full: the raw bytes are in the blob store, its record is in the
 * datastore (kind `mailInbound`), a retry of a message already taken is
 * recognised, and the handoff task is on the cluster's queue. Only then does
 * the caller answer 250; any failure on the way answers 451 and the client
 * retries (nothing half-done is handed to the app).
 *
 * A small message (at most `INLINE_INBOUND_BYTES`) has no blob: its bytes
 * ride in its entry to the seed, which writes them as `raw/<id>` beside its
 * record, durable in the same flush (no files created per message).
 *
 * Fast path (group commit, {@link createInboundStore}): messages whose DATA
 * ends while the previous group is being written go together. Larger
 * messages' raw bytes, staged while they streamed, are made durable by one
 * `BlobStore.commit` (one round of fsyncs for the group), then the group is
 * recorded, deduplicated and queued by one seed round trip
 * (`mail.inbound.commit`, seed/mail-inbound-ops.ts, the steps below done for
 * the whole group), and only then do the group's 250s go out. The raw bytes
 * are durable before any record names them, so a crash never leaves a record
 * without its message. With `--redis` the queue is not the seed's, so each
 * message takes the single ops ({@link recordInbound}) after its group's
 * blob commit.
 *
 * Order and why: the record (`in/<id>`, state `stored`) goes first, then the
 * dedupe record (`putIf`, so of two concurrent retries one wins), then the
 * task, then the record again with the task id. A crash between the dedupe
 * record and the task leaves a record without `task`: the client's retry
 * finds it and enqueues the handoff itself, answering with the first id. A
 * crash between the task and that last write leaves the task unnamed: a
 * retry queues another, and only the task the record ends up naming hands
 * the message (the app node claims an unnamed record for the task it runs:
 * lib/mail/inbound-handoff.ts, `claimInbound`, which the seed runs for it).
 */
import { pack } from 'msgpackr'
import { fromWire, type EspraError } from '../../lib/core/errors.js'
import { createGroupCommit, type GroupCommit } from '../../lib/core/group-commit.js'
import { MAX_INBOUND_BATCH, type InboundEntry, type InboundResult } from '../../lib/mail/inbound-batch.js'
import type { StagedPut } from '../../lib/storage/blob-store.js'
import type { MetaRequester } from '../../lib/tasks/queue-meta.js'
import type { Datastore, DatastoreValue } from '../../lib/storage/datastore.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { newTask } from '../../lib/tasks/task.js'
import { dedupeKey, inboundRawKey, inboundRecordKey, MAIL_TASK_ATTEMPTS, MAIL_TASK_NAME, type MailEnvelope, type RawMessageRef } from '../../lib/mail/inbound.js'
import type { HandoffVerification, MailAuthResults } from '../../lib/mail/inbound-auth.js'
import { handoffPayload, type InboundRecord } from '../../lib/mail/inbound-record.js'

export interface InboundStoreDeps {
  readonly blobs: BlobStore
  readonly datastore: Datastore
  readonly queue: TaskQueue
  readonly dedupeWindowMs: number
}

export interface Accepted {
  readonly id: string
  /** The message was a retry of this earlier one (same id): not handed again. */
  readonly duplicate: boolean
}

/** A message that arrived in full: its raw bytes staged in the blob store, or (small, `raw.store: 'ds'`) in `bytes` and staged nowhere (null). */
export interface ArrivedMessage extends InboundEntry {
  readonly staged: StagedPut | null
}

export interface InboundStore {
  readonly blobs: BlobStore
  /**
   * Resolves once the message is durable, recorded and queued (250 may go
   * out), with how long its group's blob commit (`sync`) and recording
   * (`record`) took; rejects when it is not (451). Either way the staged raw
   * bytes are the store's: kept, or discarded when nothing can name them.
   */
  accept(msg: ArrivedMessage): Promise<Accepted & { ms: { sync: number; record: number } }>
  /**
   * Starts making the staged raw bytes durable now (joining the next group's
   * blob commit) and returns the promise `accept` then waits for, so the
   * commit runs while the caller still waits for something else (the
   * authentication lookups). A failure is the caller's to see through
   * `accept`, which discards the bytes.
   */
  sync(staged: StagedPut): Promise<void>
}

export interface InboundStoreOptions extends InboundStoreDeps {
  /** The seed (through the parent) for `mail.inbound.commit`; null: the queue is not the seed's (`--redis`), single ops per message. */
  readonly seed: MetaRequester | null
  /** The meta port's frame limit: a group's entries stay under half of it. */
  readonly maxFrame: number
}

/**
 * Groups in flight at once: blob commits (one fills while one syncs) and seed
 * round trips. Eight of the latter: a round trip now waits for the seed's
 * LMDB flush, which groups in flight at once share, and the seed is not
 * CPU-bound under this load (bench/mail-inbound, 2026-12-03: with 2, a
 * message waited for a free slot behind two flushes; 4 and 8 gave shorter
 * record stages in alternating rounds).
 */
const SYNCS_IN_FLIGHT = 2
const RECORDS_IN_FLIGHT = 8
const MAX_SYNC_GROUP = 128

// Outcomes a failure leaves unknown (the seed may have recorded the message): the raw bytes stay, an orphan at worst.
const UNKNOWN_OUTCOME = new Set(['ESPRA_ERR_IPC_TIMEOUT', 'ESPRA_ERR_META_TIMEOUT', 'ESPRA_ERR_META_CLOSED'])

export function createInboundStore(opts: InboundStoreOptions): InboundStore {
  const { blobs, seed } = opts
  const durable = createGroupCommit<StagedPut, null>({
    flush: async (staged) => {
      await blobs.commit(staged)
      return staged.map(() => null)
    },
    maxItems: MAX_SYNC_GROUP,
    maxInFlight: SYNCS_IN_FLIGHT,
  })
  const recorded: Pick<GroupCommit<InboundEntry, Accepted>, 'submit'> = seed === null
    ? { submit: (e) => recordInbound(opts, { id: e.id, raw: e.raw, envelope: e.envelope, messageId: e.messageId, receivedAt: e.at, auth: e.auth, verify: e.verify, bytes: e.bytes }) }
    : createGroupCommit<InboundEntry, Accepted>({
      flush: async (entries) => {
        const { results } = await seed.request<{ results: InboundResult[] }>('mail.inbound.commit', { windowMs: opts.dedupeWindowMs, entries })
        return results.map((r) => ('error' in r ? fromWire(r.error) : r))
      },
      maxItems: MAX_INBOUND_BATCH,
      maxInFlight: RECORDS_IN_FLIGHT,
      // The bytes count as they are, the rest as packed (without packing the bytes once more only to weigh them).
      weight: (e) => (e.bytes === undefined ? pack(e).length : e.bytes.length + pack({ ...e, bytes: undefined }).length),
      maxWeight: Math.floor(opts.maxFrame / 2),
    })

  const syncing = new WeakMap<StagedPut, Promise<void>>()
  const sync = (staged: StagedPut): Promise<void> => {
    let p = syncing.get(staged)
    if (p === undefined) {
      p = durable.submit(staged).then(() => undefined)
      // Seen by accept (or by nobody, when the message is refused after all and discarded).
      p.catch(() => undefined)
      syncing.set(staged, p)
    }
    return p
  }

  return {
    blobs,
    sync,
    async accept(msg) {
      const { staged, ...entry } = msg
      const started = performance.now()
      // A small message has nothing in the blob store: its bytes go to the seed with its record.
      if (staged !== null) {
        try {
          await sync(staged)
        } catch (err) {
          await blobs.discard([staged]).catch(() => undefined)
          throw err
        }
      }
      const synced = performance.now()
      let accepted: Accepted
      try {
        accepted = await recorded.submit(entry)
      } catch (err) {
        if (staged !== null && !UNKNOWN_OUTCOME.has((err as EspraError).code)) await blobs.discard([staged]).catch(() => undefined)
        throw err
      }
      // A retry's copy: the first one is kept and handed (once).
      if (accepted.duplicate && staged !== null) void blobs.discard([staged]).catch(() => undefined)
      return { ...accepted, ms: { sync: Math.round(synced - started), record: Math.round(performance.now() - synced) } }
    },
  }
}

interface DedupeRecord {
  id: string
  at: number
}

/**
 * Records and enqueues one message whose raw bytes are already durable under
 * `raw.key`, or (`raw.store: 'ds'`) are `bytes`, written first, through the
 * single ops (four or five round trips).
 */
export async function recordInbound(deps: InboundStoreDeps, msg: { id: string; raw: RawMessageRef; envelope: MailEnvelope; messageId: string | null; receivedAt: number; auth: MailAuthResults | null; verify?: HandoffVerification | undefined; bytes?: Uint8Array | undefined }): Promise<Accepted> {
  const { datastore } = deps
  if (msg.raw.store === 'ds') await datastore.put('mailInbound', inboundRawKey(msg.id), { bytes: msg.bytes! })
  const record: InboundRecord = { id: msg.id, raw: { ...msg.raw }, envelope: { ...msg.envelope, to: [...msg.envelope.to] }, messageId: msg.messageId, at: msg.receivedAt, auth: msg.auth, task: null, ...(msg.verify === undefined ? {} : { verify: msg.verify }) }
  await datastore.put('mailInbound', inboundRecordKey(msg.id), record as unknown as DatastoreValue)

  const dkey = dedupeKey(msg.messageId, msg.raw.sha256, msg.envelope.to)
  const mine: DedupeRecord = { id: msg.id, at: msg.receivedAt }
  if (!(await datastore.putIf('mailInbound', dkey, mine as unknown as DatastoreValue, null))) {
    const seen = (await datastore.get('mailInbound', dkey)) as unknown as DedupeRecord | null
    if (seen !== null && msg.receivedAt - seen.at < deps.dedupeWindowMs) {
      const first = (await datastore.get('mailInbound', inboundRecordKey(seen.id))) as unknown as InboundRecord | null
      if (first !== null) {
        // The copy we just stored is not needed: the first one is kept and handed (once).
        await datastore.delete('mailInbound', inboundRecordKey(msg.id))
        await (msg.raw.store === 'ds' ? datastore.delete('mailInbound', inboundRawKey(msg.id)) : deps.blobs.delete(msg.raw.key))
        if (first.task === null) await enqueue(deps, { ...first, task: null })
        return { id: first.id, duplicate: true }
      }
    }
    // Older than the window (or its record is gone): this one is new; take the dedupe key over.
    if (!(await datastore.putIf('mailInbound', dkey, mine as unknown as DatastoreValue, { id: seen?.id ?? null }))) {
      throw Object.assign(new Error('a concurrent retry of the same message took it first'), { code: 'ESPRA_ERR_MAIL_NOT_DURABLE' })
    }
  }
  await enqueue(deps, record)
  return { id: msg.id, duplicate: false }
}

async function enqueue(deps: InboundStoreDeps, record: InboundRecord): Promise<void> {
  const task = await deps.queue.enqueue(newTask(MAIL_TASK_NAME, handoffPayload(record), { attempts: MAIL_TASK_ATTEMPTS }))
  // Unless an app node already claimed the record for the task it leased (roles/app/mail-handoff.ts): the task it names hands it.
  await deps.datastore.putIf('mailInbound', inboundRecordKey(record.id), { ...record, task } as unknown as DatastoreValue, { task: null })
}
