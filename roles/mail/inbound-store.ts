/**
 * What "250 only when durable" means, in one place. For every message that
 * arrived in full: the raw bytes are in the blob store, its record is in the
 * datastore (kind `mailInbound`), a retry of a message already taken is
 * recognised, and the handoff task is on the cluster's queue. Only then does
 * the caller answer 250; any failure on the way answers 451 and the client
 * retries (nothing half-done is handed to the app).
 *
 * Order and why: the record (`in/<id>`, state `stored`) goes first, then the
 * dedupe record (`putIf`, so of two concurrent retries one wins), then the
 * task, then the record again with the task id. A crash between the dedupe
 * record and the task leaves a record without `task`: the client's retry
 * finds it and enqueues the handoff itself, answering with the first id. A
 * crash between the task and that last write can hand a message twice (at
 * least once, like every task): handlers key what they write by `message.id`.
 */
import type { Datastore, DatastoreValue } from '../../lib/storage/datastore.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { newTask } from '../../lib/tasks/task.js'
import { dedupeKey, inboundRecordKey, MAIL_TASK_ATTEMPTS, MAIL_TASK_NAME, type MailEnvelope, type RawMessageRef } from '../../lib/mail/inbound.js'
import type { AuthedMailTaskPayload, MailAuthResults } from '../../lib/mail/inbound-auth.js'
import type { InboundRecord } from '../../lib/mail/inbound-record.js'

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

interface DedupeRecord {
  id: string
  at: number
}

/** Records and enqueues a message whose raw bytes are already durable under `raw.key`. */
export async function recordInbound(deps: InboundStoreDeps, msg: { id: string; raw: RawMessageRef; envelope: MailEnvelope; messageId: string | null; receivedAt: number; auth: MailAuthResults | null }): Promise<Accepted> {
  const { datastore } = deps
  const record: InboundRecord = { id: msg.id, raw: { ...msg.raw }, envelope: { ...msg.envelope, to: [...msg.envelope.to] }, messageId: msg.messageId, at: msg.receivedAt, auth: msg.auth, task: null }
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
        await deps.blobs.delete(msg.raw.key)
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
  const payload: AuthedMailTaskPayload = { id: record.id, raw: record.raw, envelope: record.envelope, receivedAt: record.at, auth: record.auth ?? null }
  const task = await deps.queue.enqueue(newTask(MAIL_TASK_NAME, payload, { attempts: MAIL_TASK_ATTEMPTS }))
  await deps.datastore.put('mailInbound', inboundRecordKey(record.id), { ...record, task } as unknown as DatastoreValue)
}
