/**
 * The datastore side of one inbound message's handoff to `handleMail`
 * (docs/mail.md, "The handoff"): the claim, which also reads a small
 * message's raw bytes, and the note of an attempt's outcome. The seed runs
 * each as one meta op (`mail.inbound.claim`, `mail.inbound.outcome`:
 * seed/mail-handoff-ops.ts) instead of the app child sending it the three to
 * five `ds.get`/`ds.putIf` ops they are made of; an app node whose seed does
 * not know the ops runs the same functions over those single ops
 * (roles/app/mail-handoff-ops.ts), so both ways keep the same guarantees.
 */
import { createError, type EspraError } from '../core/errors.js'
import type { Datastore, DatastoreValue } from '../storage/datastore.js'
import { TASK_ID } from '../tasks/task.js'
import { INLINE_INBOUND_BYTES, inboundRawKey, inboundRecordKey } from './inbound.js'
import { MAIL_ID } from './inbound-batch.js'
import { MAX_RECORD_ERROR, type InboundRecord } from './inbound-record.js'

const KIND = 'mailInbound'

/**
 * A claim's answer: `skip` (this task does not hand the message, and why), or
 * the task hands it, with the message's raw bytes when they are a datastore
 * record (`raw.store: 'ds'`; null when that record is gone) and absent when
 * they are in the blob store.
 */
export type HandoffClaim = { readonly skip: string } | { readonly bytes?: Uint8Array | null }

/** One finished attempt of a handoff task (a released lease is not one). */
export interface HandoffOutcome {
  readonly id: string
  readonly task: string
  readonly attempt: number
  readonly result: 'done' | 'failed'
  /** The failure (cut to {@link MAX_RECORD_ERROR} characters when noted); only with `failed`. */
  readonly error?: string
}

type RecordStore = Pick<Datastore, 'get' | 'putIf'>

const getRecord = async (datastore: RecordStore, id: string) => (await datastore.get(KIND, inboundRecordKey(id))) as unknown as InboundRecord | null

/**
 * Whether task `task` hands message `id`: the record names it, or names no
 * task yet and this one claims it (compare-and-set from null). A message has
 * at most one handoff task that runs `handleMail`: another one (queued again
 * by `admin mail inbound retry` or a client's retry while the record did not
 * yet name the first) is skipped, and so is one whose record is gone (swept
 * after its retention: seed/mail-inbound-sweep.ts). The claim is written
 * before the bytes are read, so a crash after it leaves a record naming a
 * task that runs again and hands the message then.
 */
export async function claimInbound(datastore: RecordStore, id: string, task: string): Promise<HandoffClaim> {
  const key = inboundRecordKey(id)
  let record = await getRecord(datastore, id)
  if (record !== null && record.task === null) {
    if (await datastore.putIf(KIND, key, { ...record, task } as unknown as DatastoreValue, { task: null })) record = { ...record, task }
    else record = await getRecord(datastore, id)
  }
  if (record === null) return { skip: `inbound message ${id} has no record (removed after its retention): nothing to hand` }
  if (record.task !== task) return { skip: `inbound message ${id} is handed by task ${record.task}: this copy is not run` }
  if (record.raw.store !== 'ds') return {}
  const raw = await datastore.get(KIND, inboundRawKey(id))
  const bytes = raw?.['bytes']
  return { bytes: bytes instanceof Uint8Array ? bytes : null }
}

/**
 * Notes an attempt's outcome on the message's record (`handledAt`, or
 * `attempts`, `lastError`, `failedAt`) for `admin mail inbound`; false when
 * nothing was noted: the record is gone, or names another task (a later
 * handoff: `admin mail inbound retry` of an unqueued one), or changed under it.
 */
export async function noteInboundOutcome(datastore: RecordStore, outcome: HandoffOutcome, now = Date.now()): Promise<boolean> {
  const record = await getRecord(datastore, outcome.id)
  if (record === null || (record.task !== null && record.task !== outcome.task)) return false
  const next: InboundRecord = outcome.result === 'done'
    ? { ...record, task: outcome.task, handledAt: now, attempts: outcome.attempt }
    : { ...record, task: outcome.task, attempts: outcome.attempt, lastError: (outcome.error ?? '').slice(0, MAX_RECORD_ERROR), failedAt: now }
  return datastore.putIf(KIND, inboundRecordKey(outcome.id), next as unknown as DatastoreValue, { task: record.task })
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)

function bad(field: string, allowed: string): EspraError {
  return createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: `must be ${allowed}` })
}

/** `at`: where the map sits in the body (`claims.3.` for an entry of a batch; '' for a whole body). */
function checkIds(body: unknown, shape: string, at = ''): { id: string; task: string } {
  if (!isMap(body)) throw bad(at === '' ? 'body' : at.slice(0, -1), `a map ${shape}`)
  const { id, task } = body
  if (typeof id !== 'string' || !MAIL_ID.test(id)) throw bad(`${at}id`, 'a message id (m, its time in base 36, 12 hex digits)')
  if (typeof task !== 'string' || !TASK_ID.test(task)) throw bad(`${at}task`, 'a task id such as t42')
  return { id, task }
}

/** Checks a `mail.inbound.claim` body `{id, task}`; throws `ESPRA_ERR_META_BAD_REQUEST` naming the bad field. */
export function checkClaim(body: unknown, at = ''): { id: string; task: string } {
  return checkIds(body, '{id, task}', at)
}

/** Checks a `mail.inbound.outcome` body; throws `ESPRA_ERR_META_BAD_REQUEST` naming the bad field. */
export function checkOutcome(body: unknown, at = ''): HandoffOutcome {
  const { id, task } = checkIds(body, '{id, task, attempt, result, error?}', at)
  const { attempt, result, error } = body as Record<string, unknown>
  if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1 || attempt > 1_000_000) throw bad(`${at}attempt`, 'an integer from 1 to 1000000')
  if (result === 'done') {
    if (error !== undefined) throw bad(`${at}error`, "absent when result is 'done'")
    return { id, task, attempt, result }
  }
  if (result !== 'failed') throw bad(`${at}result`, "'done' or 'failed'")
  if (typeof error !== 'string') throw bad(`${at}error`, "text when result is 'failed'")
  return { id, task, attempt, result, error: error.slice(0, MAX_RECORD_ERROR) }
}

/**
 * Most claims in one `mail.inbound.claims`: each answer may carry up to
 * 48 KB of raw bytes, so 16 fit a 1 MB frame (the default `--max-frame`;
 * the sender takes fewer under a smaller one: {@link claimsPerOp}).
 */
export const MAX_CLAIMS_PER_OP = 16
/** Most outcomes in one `mail.inbound.outcomes` (small: ids, counts and an error cut to 1,000 characters). */
export const MAX_OUTCOMES_PER_OP = 256

/** Claims per op that keep the answer within `maxFrame` (each may bring {@link INLINE_INBOUND_BYTES} of raw bytes). */
export function claimsPerOp(maxFrame: number): number {
  return Math.max(1, Math.min(MAX_CLAIMS_PER_OP, Math.floor((maxFrame - 64 * 1024) / (INLINE_INBOUND_BYTES + 1024))))
}

function checkList<T>(body: unknown, field: string, max: number, check: (entry: unknown, at: string) => T): T[] {
  if (!isMap(body)) throw bad('body', `a map {${field}: [...]}`)
  const list = body[field]
  if (!Array.isArray(list) || list.length < 1 || list.length > max) throw bad(field, `a list of 1 to ${max} entries`)
  return list.map((entry, n) => check(entry, `${field}.${n}.`))
}

/** Checks a `mail.inbound.claims` body `{claims: [{id, task}]}` (1 to {@link MAX_CLAIMS_PER_OP}); the bad field is named `claims.<n>.<field>`. */
export function checkClaims(body: unknown): { id: string; task: string }[] {
  return checkList(body, 'claims', MAX_CLAIMS_PER_OP, checkClaim)
}

/** Checks a `mail.inbound.outcomes` body `{outcomes: [...]}` (1 to {@link MAX_OUTCOMES_PER_OP}). */
export function checkOutcomes(body: unknown): HandoffOutcome[] {
  return checkList(body, 'outcomes', MAX_OUTCOMES_PER_OP, checkOutcome)
}
