/**
 * The admin API's audit log: one entry per state-changing call, whether it
 * succeeded or was refused (bad input, a viewer acting, the seed saying no),
 * in the datastore's `adminAudit` kind.
 *
 * Keys are `a/<13-digit inverted time>-<random>`: newest first in key order,
 * so listing the latest entries, and paging back with `before`, is one range
 * scan. Entries older than `--admin-audit-retention` are deleted by a sweep
 * each child runs hourly (and at start): because old entries sort last, they
 * are exactly the keys after the cutoff's key, another range scan. Children
 * sweeping at once only delete the same keys twice.
 */
import { randomBytes } from 'node:crypto'
import type { AdminOperator } from '../../lib/core/options-admin.js'
import type { Datastore, DatastoreValue } from '../../lib/storage/datastore.js'

export const AUDIT_PREFIX = 'a/'
/** Larger than any ms timestamp until the year 2286. */
const TIME_CEILING = 9_999_999_999_999
/** An entry id: the key without its prefix. */
export const AUDIT_ID = /^\d{13}-[0-9a-f]{8}$/

export interface AuditEntry {
  id: string
  /** ms since the epoch. */
  at: number
  operator: string
  role: AdminOperator['role']
  action: string
  target: string | null
  params: Record<string, unknown> | null
  address: string
  /** `ok`, or the error code it was refused with. */
  outcome: string
  status: number
  /** Answered from an earlier call with the same Idempotency-Key (nothing done again). */
  replayed?: true
}

const invertedTime = (at: number): string => String(TIME_CEILING - at).padStart(13, '0')

export function newAuditId(at: number): string {
  return `${invertedTime(at)}-${randomBytes(4).toString('hex')}`
}

export async function writeAudit(datastore: Datastore, entry: Omit<AuditEntry, 'id'>): Promise<AuditEntry> {
  const full: AuditEntry = { id: newAuditId(entry.at), ...entry }
  await datastore.put('adminAudit', `${AUDIT_PREFIX}${full.id}`, full as unknown as DatastoreValue)
  return full
}

/** Newest first; `before` an entry id: only older entries. `next` is the `before` of the following page. */
export async function listAudit(datastore: Datastore, opts: { limit: number; before?: string }): Promise<{ entries: AuditEntry[]; next: string | null }> {
  const page = await datastore.list('adminAudit', {
    prefix: AUDIT_PREFIX, limit: opts.limit, ...(opts.before !== undefined ? { after: `${AUDIT_PREFIX}${opts.before}` } : {}),
  })
  const entries = page.entries.map((e) => e.value as unknown as AuditEntry)
  return { entries, next: page.next === null ? null : page.next.slice(AUDIT_PREFIX.length) }
}

/** Deletes entries older than `retentionMs`; resolves how many. */
export async function sweepAudit(datastore: Datastore, retentionMs: number, now: number = Date.now()): Promise<number> {
  // Keys after the cutoff's (with the largest random part) are exactly the entries older than the cutoff.
  const after = `${AUDIT_PREFIX}${invertedTime(now - retentionMs)}-ffffffff`
  let removed = 0
  for (;;) {
    const page = await datastore.list('adminAudit', { prefix: AUDIT_PREFIX, after, limit: 1000 })
    for (const e of page.entries) if (await datastore.delete('adminAudit', e.key)) removed++
    if (page.next === null || page.entries.length === 0) return removed
  }
}
