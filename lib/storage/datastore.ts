/**
 * The datastore: platform records (upload tokens, file records, vhost
 * mappings, builds, deploy history), by kind and key. One narrow interface
 * with two implementations so far: the embedded store the seed hosts
 * (seed/datastore-embedded.ts) and the client other nodes use to reach it
 * over the meta port (lib/storage/datastore-client.ts). It is kept to what a
 * networked database does in one statement each (get, upsert, delete, a
 * keyed range scan, delete-returning, a conditional update), so one can back
 * it later.
 *
 * Values are plain objects (msgpack maps); their shapes belong to the
 * features that write them. Records are checked here, once, for every
 * implementation: see {@link recordProblem}.
 */
import { pack } from 'msgpackr'
import { createError } from '../core/errors.js'

export const DATASTORE_KINDS = ['uploadTokens', 'files', 'vhosts', 'builds', 'deploys', 'tusUploads', 'appTables', 'cluster', 'mailInbound', 'mailOutbound', 'mailSuppression', 'alerts', 'alertSilences', 'adminAudit', 'adminIdempotency', 'adminJobs', 'adminSessions'] as const
export type DatastoreKind = (typeof DATASTORE_KINDS)[number]

/** A record's value: a plain object. */
export type DatastoreValue = Record<string, unknown>

export interface DatastoreEntry {
  readonly key: string
  readonly value: DatastoreValue
}

export interface ListOptions {
  /** Only keys starting with this. */
  readonly prefix?: string
  /** Only keys after this one (the `next` of the previous page). */
  readonly after?: string
  /** At most this many entries (default 100, at most 1000). */
  readonly limit?: number
}

export interface DatastorePage {
  /** In key order (binary). */
  readonly entries: DatastoreEntry[]
  /** Pass as `after` for the next page; null when this was the last. */
  readonly next: string | null
}

export interface Datastore {
  get(kind: DatastoreKind, key: string): Promise<DatastoreValue | null>
  /** Inserts or replaces; durable when the promise resolves. */
  put(kind: DatastoreKind, key: string, value: DatastoreValue): Promise<void>
  /** True when there was a record. */
  delete(kind: DatastoreKind, key: string): Promise<boolean>
  list(kind: DatastoreKind, options?: ListOptions): Promise<DatastorePage>
  /**
   * Removes the record and returns it, atomically: of any number of
   * concurrent calls for one key, exactly one gets the value (single-use
   * upload tokens). Null when there was none. `opId` (lib/storage/op-id.ts):
   * a store that remembers op ids applies one id once and answers a repeat
   * with the first answer; the datastore client draws one per call.
   */
  consume(kind: DatastoreKind, key: string, opId?: string): Promise<DatastoreValue | null>
  /**
   * Compare-and-set: writes `value` only when the current record matches,
   * atomically. `match` null: only when there is no record (insert). A map of
   * fields: only when there is a record and each named field equals the
   * given scalar (null also matches a missing field). True when written. Of
   * concurrent calls with the same `match`, at most one succeeds when each
   * changes a matched field (resumable uploads advance their offset so).
   * `opId`: as for {@link Datastore.consume}.
   */
  putIf(kind: DatastoreKind, key: string, value: DatastoreValue, match: DatastoreMatch | null, opId?: string): Promise<boolean>
  /**
   * Two writes in one transaction (one upload's records: its token spent,
   * its file recorded; seed/upload-ops.ts): consumes `take` when given, and
   * only if that found a record (or none was asked for) inserts `insert`
   * unless a record is there already, which is answered instead. Nothing is
   * written when `take` finds nothing. `opId`: as for
   * {@link Datastore.consume}. The seed's stores have it (embedded,
   * PostgreSQL); the meta-port client has not (the seed op is its way).
   */
  consumeAndInsert?(take: DatastoreRef | null, insert: DatastoreEntryRef | null, opId?: string): Promise<ConsumeAndInsert>
  close(): Promise<void>
}

/** A record by kind and key. */
export interface DatastoreRef {
  readonly kind: DatastoreKind
  readonly key: string
}

/** A record to write. */
export interface DatastoreEntryRef extends DatastoreRef {
  readonly value: DatastoreValue
}

/** What {@link Datastore.consumeAndInsert} did. */
export interface ConsumeAndInsert {
  /** `take` found a record and removed it (true when no `take` was asked for). */
  readonly taken: boolean
  /** `insert` was written (false when `take` found nothing, or a record was there). */
  readonly inserted: boolean
  /** The record under `insert`'s key now: the one written, or the one that was there; null when nothing was written and none is there. */
  readonly current: DatastoreValue | null
}

/** Checks the two parts of a {@link Datastore.consumeAndInsert} (`ESPRA_ERR_DATASTORE_INVALID`). */
export function checkConsumeAndInsert(take: DatastoreRef | null, insert: DatastoreEntryRef | null): void {
  if (take !== null) {
    check(kindProblem(take.kind))
    check(keyProblem(take.key))
  }
  if (insert !== null) {
    check(kindProblem(insert.kind))
    check(keyProblem(insert.key))
    check(valueProblem(insert.value))
  }
}

/** Field → expected value for {@link Datastore.putIf}. */
export type DatastoreMatch = Readonly<Record<string, string | number | boolean | null>>

export const MAX_MATCH_FIELDS = 16

export const MAX_KEY_BYTES = 512
/** Encoded (msgpack) size of one value. */
export const MAX_VALUE_BYTES = 64 * 1024
export const DEFAULT_LIST_LIMIT = 100
export const MAX_LIST_LIMIT = 1000

// Printable text, no control characters: keys are content hashes, token ids, `host/path` pairs.
const KEY = /^[^\x00-\x1f\x7f]+$/

export interface Problem {
  readonly field: string
  readonly allowed: string
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date)

export function kindProblem(kind: unknown): Problem | null {
  return DATASTORE_KINDS.includes(kind as DatastoreKind) ? null : { field: 'kind', allowed: `one of ${DATASTORE_KINDS.join(', ')}` }
}

export function keyProblem(key: unknown, field = 'key'): Problem | null {
  if (typeof key !== 'string' || !KEY.test(key) || Buffer.byteLength(key) > MAX_KEY_BYTES) {
    return { field, allowed: `1 to ${MAX_KEY_BYTES} bytes of text without control characters` }
  }
  return null
}

export function valueProblem(value: unknown): Problem | null {
  if (!isPlainObject(value)) return { field: 'value', allowed: 'a map (plain object)' }
  let size: number
  try {
    size = pack(value).length
  } catch {
    return { field: 'value', allowed: 'encodable as msgpack' }
  }
  return size > MAX_VALUE_BYTES ? { field: 'value', allowed: `at most ${MAX_VALUE_BYTES} bytes encoded (got ${size})` } : null
}

export function listProblem(options: unknown): Problem | null {
  if (options === undefined) return null
  if (!isPlainObject(options)) return { field: 'options', allowed: 'a map' }
  const { prefix, after, limit } = options
  if (prefix !== undefined && prefix !== '' && keyProblem(prefix)) return keyProblem(prefix, 'prefix')
  if (after !== undefined && keyProblem(after)) return keyProblem(after, 'after')
  if (limit !== undefined && !(typeof limit === 'number' && Number.isInteger(limit) && limit >= 1 && limit <= MAX_LIST_LIMIT)) {
    return { field: 'limit', allowed: `an integer from 1 to ${MAX_LIST_LIMIT}` }
  }
  return null
}

export function matchProblem(match: unknown): Problem | null {
  if (match === null) return null
  const allowed = `null or a map of 1 to ${MAX_MATCH_FIELDS} fields whose values are strings, numbers, booleans or null`
  if (!isPlainObject(match)) return { field: 'match', allowed }
  const entries = Object.entries(match)
  if (entries.length === 0 || entries.length > MAX_MATCH_FIELDS) return { field: 'match', allowed }
  for (const [, v] of entries) if (!(v === null || ['string', 'number', 'boolean'].includes(typeof v))) return { field: 'match', allowed }
  return null
}

/** Whether `record` (null: none) satisfies a {@link Datastore.putIf} match; one rule for every implementation. */
export function matches(record: DatastoreValue | null, match: DatastoreMatch | null): boolean {
  if (match === null) return record === null
  if (record === null) return false
  return Object.entries(match).every(([field, want]) => (record[field] ?? null) === want)
}

/** Throws `ESPRA_ERR_DATASTORE_INVALID` naming the first bad part (in-process callers). */
export function check(problem: Problem | null): void {
  if (problem) throw createError('ESPRA_ERR_DATASTORE_INVALID', { field: problem.field, reason: `must be ${problem.allowed}` })
}

/** Every entry of a kind (optionally under a prefix), page by page. */
export async function* listAll(store: Datastore, kind: DatastoreKind, prefix?: string): AsyncIterable<DatastoreEntry> {
  let after: string | undefined
  for (;;) {
    const page = await store.list(kind, { ...(prefix ? { prefix } : {}), ...(after !== undefined ? { after } : {}), limit: MAX_LIST_LIMIT })
    yield* page.entries
    if (page.next === null) return
    after = page.next
  }
}
