/**
 * The app side of the mail handoff: a leased `espra.mail` task carries only
 * the message id, where its raw bytes are (a blob key, or for a small message
 * its datastore record) and the envelope; before a worker runs
 * `handleMail`, the child's main thread (which holds the blob store and the
 * datastore) reads and parses the raw message as a stream (attachments to the blob store) and
 * gives the worker the whole message instead of the small payload. Worker
 * messages are not bound by the queue's 64 KB payload limit.
 *
 * The message's authentication results (`message.auth`): the task's `auth`
 * when the mail node verified before its 250 (`--mail-dmarc-reject`, or a
 * task from a previous version); else, when the task carries `verify`, the
 * stored raw message is verified here, read a second time alongside the
 * parse (lib/mail/verify-stored.ts), so the 250 never waited for DNS.
 *
 * Once an attempt is over, its outcome is noted on the message's record
 * (`handledAt`, or `attempts`, `lastError`, `failedAt`) for
 * `admin mail inbound`; a note that cannot be written is logged, never a
 * reason to run the handoff again.
 */
import { Packr } from 'msgpackr'
import type { Logger } from '../../lib/core/log.js'
import { inboundRecordKey, MAIL_TASK_NAME, type MailTaskPayload } from '../../lib/mail/inbound.js'
import type { DNSResolver } from 'mailauth'
import type { AuthedInboundMessage, AuthedMailTaskPayload, HandoffVerification, MailAuthResults } from '../../lib/mail/inbound-auth.js'
import { MAX_RECORD_ERROR, type InboundRecord } from '../../lib/mail/inbound-record.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { Datastore, DatastoreValue } from '../../lib/storage/datastore.js'
import { decodePayload, type LeasedTask } from '../../lib/tasks/task.js'
import type { TaskOutcome } from './protocol.js'

// The same encoding as task payloads (lib/tasks/task.ts), so the worker decodes it as any payload.
const packr = new Packr({ useRecords: false, moreTypes: false })

/**
 * Whether this task is the message's handoff: the record names it, or names
 * no task yet and this one claims it (compare-and-set). A message has at most
 * one handoff task that runs `handleMail`: another one (queued again by
 * `admin mail inbound retry` or a client's retry while the record did not yet
 * name the first) is settled without running, and so is one whose record is
 * gone (swept after its retention: seed/mail-inbound-sweep.ts).
 */
export async function claimHandoff(datastore: Pick<Datastore, 'get' | 'putIf'>, id: string, taskId: string): Promise<string | null> {
  const key = inboundRecordKey(id)
  let record = (await datastore.get('mailInbound', key)) as unknown as InboundRecord | null
  if (record !== null && record.task === null) {
    if (await datastore.putIf('mailInbound', key, { ...record, task: taskId } as unknown as DatastoreValue, { task: null })) return null
    record = (await datastore.get('mailInbound', key)) as unknown as InboundRecord | null
  }
  if (record === null) return `inbound message ${id} has no record (removed after its retention): nothing to hand`
  if (record.task !== taskId) return `inbound message ${id} is handed by task ${record.task}: this copy is not run`
  return null
}

export interface MailPreparerOptions {
  readonly log: Logger
  /** The lookups of the verifications run here (tests pass their own records); by default the DNS servers the task names, or the system's. */
  readonly resolver?: (verify: HandoffVerification) => DNSResolver
}

/** For `espra.mail` tasks, the task with the parsed message as its payload (or `{skip}`: not this task's to hand); null for every other task. */
export function createMailPreparer(blobs: BlobStore, datastore: Pick<Datastore, 'get' | 'putIf'>, opts: MailPreparerOptions): (task: LeasedTask) => Promise<LeasedTask | { skip: string }> | null {
  const stores = { blobs, datastore }
  const onError = (err: unknown) => opts.log.warn({ err }, 'mail authentication failed to run: results are temperror')

  async function verifyHere(payload: AuthedMailTaskPayload, verify: HandoffVerification): Promise<MailAuthResults> {
    // mailauth is loaded with the first message to verify, as mailparser is.
    const { verifyStoredMessage } = await import('../../lib/mail/verify-stored.js')
    return verifyStoredMessage(stores, payload, verify, { onError, ...(opts.resolver === undefined ? {} : { resolver: opts.resolver(verify) }) })
  }

  return (task) => {
    if (task.name !== MAIL_TASK_NAME) return null
    return (async () => {
      const payload = decodePayload(task.payload) as AuthedMailTaskPayload
      const skip = await claimHandoff(datastore, payload.id, task.id)
      if (skip !== null) return { skip }
      // mailparser is loaded with the first mail: most app nodes never handle one.
      const { parseInboundMessage } = await import('../../lib/mail/parse-message.js')
      const verify = payload.verify ?? null
      // The mail node's results when it verified; else verified here (the parse and the lookups at once); null: nobody verifies.
      const [parsed, auth] = await Promise.all([
        parseInboundMessage(stores, payload),
        payload.auth ?? (verify === null ? null : verifyHere(payload, verify)),
      ])
      const message: AuthedInboundMessage = { ...parsed, auth }
      return { ...task, payload: packr.pack(message) }
    })()
  }
}

/** Notes each `espra.mail` attempt's outcome on the message's record; other tasks are not its business. */
export function createMailOutcomeNotes(datastore: Datastore, log: Logger): (task: LeasedTask, outcome: TaskOutcome) => void {
  return (task, outcome) => {
    if (task.name !== MAIL_TASK_NAME || outcome.result === 'released') return
    void (async () => {
      const { id } = decodePayload(task.payload) as MailTaskPayload
      const key = inboundRecordKey(id)
      const record = (await datastore.get('mailInbound', key)) as unknown as InboundRecord | null
      // A record that names another task belongs to a later handoff (admin mail inbound retry of an unqueued one).
      if (record === null || (record.task !== null && record.task !== task.id)) return
      const now = Date.now()
      const next: InboundRecord = outcome.result === 'done'
        ? { ...record, task: task.id, handledAt: now, attempts: task.attempt }
        : { ...record, task: task.id, attempts: task.attempt, lastError: outcome.error.slice(0, MAX_RECORD_ERROR), failedAt: now }
      await datastore.putIf('mailInbound', key, next as unknown as DatastoreValue, { task: record.task })
    })().catch((err: unknown) => log.warn({ err, task: task.id }, `could not note the mail handoff's outcome on its record (admin mail inbound may show it pending)`))
  }
}
