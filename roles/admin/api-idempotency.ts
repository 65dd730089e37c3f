/**
 * `Idempotency-Key` for the admin API's state-changing calls, kept in the
 * datastore's `adminIdempotency` kind so every child (and every admin node)
 * sees the same keys. Per operator and key, for 24 h:
 *
 * - first call: a `pending` record is inserted (insert-if-absent, atomic),
 *   the call runs, and its answer replaces the record;
 * - the same key and request again: the stored answer, nothing done again;
 * - the same key with another method, path or body: 422;
 * - while the first is still running: 409.
 *
 * Answers of 500 and up (and any over 48 KB) are not kept (the record is removed): a call that
 * failed on our side may be tried again with the same key. A `pending`
 * record older than {@link PENDING_STALE_MS} belongs to a child that died
 * mid-call; the next call with that key takes it over. Records past 24 h
 * are replaced when their key comes again and deleted by the hourly sweep.
 */
import { createHash } from 'node:crypto'
import { createError } from '../../lib/core/errors.js'
import { listAll, type Datastore, type DatastoreValue } from '../../lib/storage/datastore.js'
import type { ApiAnswer } from './api-router.js'
import { badField } from './api-fields.js'

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000
/** Every state-changing call answers well within this (long work runs as a job). */
const PENDING_STALE_MS = 10 * 60_000
const MAX_KEPT_ANSWER = 48 * 1024
const KEY_FORMAT = /^[\x21-\x7e]{1,255}$/

interface IdempotencyRecord {
  state: 'pending' | 'done'
  /** sha256 of method, path and body. */
  request: string
  at: number
  status?: number
  answer?: string
}

/** What to do with a call that carries a key. */
export type IdempotencyClaim =
  | { readonly kind: 'run'; finish(answer: ApiAnswer): Promise<void> }
  | { readonly kind: 'replay'; readonly answer: ApiAnswer }

export function checkIdempotencyKey(raw: string): string {
  if (!KEY_FORMAT.test(raw)) throw badField('Idempotency-Key', 'must be 1 to 255 printable ASCII characters without spaces')
  return raw
}

export const requestHash = (method: string, path: string, body: string): string =>
  createHash('sha256').update(`${method}\0${path}\0${body}`).digest('hex')

const recordKey = (operator: string, key: string): string => `${operator}/${createHash('sha256').update(key).digest('hex')}`

/** Claims `key` for this call, or says how to answer it without running it. */
export async function claimIdempotencyKey(datastore: Datastore, operator: string, key: string, request: string, now: number = Date.now()): Promise<IdempotencyClaim> {
  const k = recordKey(operator, key)
  const pending: IdempotencyRecord = { state: 'pending', request, at: now }
  let claimed = await datastore.putIf('adminIdempotency', k, pending as unknown as DatastoreValue, null)
  if (!claimed) {
    const old = (await datastore.get('adminIdempotency', k)) as unknown as IdempotencyRecord | null
    const expired = old === null || now - old.at >= IDEMPOTENCY_TTL_MS || (old.state === 'pending' && now - old.at >= PENDING_STALE_MS)
    if (expired) {
      claimed = await datastore.putIf('adminIdempotency', k, pending as unknown as DatastoreValue, old === null ? null : { at: old.at, state: old.state })
    } else if (old.request !== request) {
      throw createError('ESPRA_ERR_ADMIN_IDEMPOTENCY_MISMATCH', { key: JSON.stringify(key.slice(0, 64)), at: new Date(old.at).toISOString() })
    } else if (old.state === 'done') {
      return { kind: 'replay', answer: { status: old.status!, body: JSON.parse(old.answer!) as unknown } }
    }
    if (!claimed) throw createError('ESPRA_ERR_ADMIN_IDEMPOTENCY_IN_PROGRESS', { key: JSON.stringify(key.slice(0, 64)) })
  }
  return {
    kind: 'run',
    async finish(answer) {
      const text = JSON.stringify(answer.body)
      // A record holds at most 64 KB: a larger answer (none of today's routes gives one) is not kept either.
      if (answer.status >= 500 || Buffer.byteLength(text) > MAX_KEPT_ANSWER) return void (await datastore.delete('adminIdempotency', k))
      const done: IdempotencyRecord = { state: 'done', request, at: now, status: answer.status, answer: text }
      await datastore.put('adminIdempotency', k, done as unknown as DatastoreValue)
    },
  }
}

/** Deletes records past 24 h; resolves how many. */
export async function sweepIdempotency(datastore: Datastore, now: number = Date.now()): Promise<number> {
  const old: string[] = []
  for await (const e of listAll(datastore, 'adminIdempotency')) if (now - Number(e.value['at']) >= IDEMPOTENCY_TTL_MS) old.push(e.key)
  let removed = 0
  for (const key of old) if (await datastore.delete('adminIdempotency', key)) removed++
  return removed
}
