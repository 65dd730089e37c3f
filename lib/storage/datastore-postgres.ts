/**
 * The datastore in PostgreSQL (`--datastore postgres://…`): the seed's
 * backend for clusters that outgrow one machine. Same interface and
 * semantics as the embedded store (seed/datastore-embedded.ts); the contract
 * test runs the same cases against both.
 *
 * One table, `espra_records (kind, key, value, version, expires_at)`:
 * - `key` is `COLLATE "C"`, so keys sort by their bytes as LMDB sorts them;
 *   a list is one index range scan (`LIKE 'prefix%'` on a C-collated
 *   column uses the primary key's B-tree);
 * - `value` is the record as msgpack (what the meta port carries);
 * - `version` grows on every write: `putIf` reads, compares in JS with the
 *   one shared rule ({@link matches}) and writes only if the version is
 *   still the one it read, retrying when it lost the race, so of
 *   concurrent calls at most one wins, as in one LMDB write transaction;
 * - `expires_at` is the app-table row's TTL (`exp`), so expired rows are
 *   swept with one indexed DELETE.
 *
 * `consume` and `putIf` with an op id run in one transaction with its
 * record (lib/storage/postgres-ops.ts): sent again, to this seed or another
 * on the database, they apply once and answer the same.
 */
import { Packr } from 'msgpackr'
import { createError } from '../core/errors.js'
import { rowExpiresAt } from './app-tables.js'
import {
  check, checkConsumeAndInsert, DEFAULT_LIST_LIMIT, keyProblem, kindProblem, listProblem, matches, matchProblem, valueProblem,
  type ConsumeAndInsert, type Datastore, type DatastoreEntryRef, type DatastoreRef, type DatastoreKind, type DatastoreMatch, type DatastorePage, type DatastoreValue, type ListOptions,
} from './datastore.js'
import { NOW_MS } from './postgres-clock.js'
import { applyOnce, removeExpiredOps } from './postgres-ops.js'
import type { PgQuery, Postgres } from './postgres.js'

// Plain msgpack maps (no records): any reader decodes them.
const packr = new Packr({ useRecords: false })

export interface PostgresDatastore extends Datastore {
  /** Deletes app-table rows whose TTL passed before `now`, and op-id records past their time; how many went. */
  removeExpiredRows(now: number): Promise<number>
  /**
   * A `put` fenced by the leader lease (docs/postgres.md, "Several seeds"): written only while `holder` holds the
   * lease (`espra_leader`) under `epoch` and it has not run out, in one statement that holds a share lock on the
   * lease row until it commits, so a takeover waits for it and then reads it. False (nothing written): the epoch
   * is stale, the write of a leader that was paused past its lease.
   */
  putFenced(kind: DatastoreKind, key: string, value: DatastoreValue, fence: { holder: string; epoch: number }): Promise<boolean>
}

const encode = (value: DatastoreValue): Buffer => packr.pack(value)
const decode = (bytes: Buffer): DatastoreValue => packr.unpack(bytes) as DatastoreValue
/** `LIKE` pattern for keys starting with `prefix`. */
const likePrefix = (prefix: string): string => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** `db` is the seed's pool (lib/storage/postgres.ts); closing this store leaves it open. */
export function createPostgresDatastore(db: Postgres): PostgresDatastore {
  let closed = false
  const target = (kind: DatastoreKind, key: string): void => {
    check(kindProblem(kind))
    check(keyProblem(key))
    if (closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
  }
  const expiry = (kind: DatastoreKind, value: DatastoreValue): number | null => {
    if (kind !== 'appTables') return null
    const exp = rowExpiresAt(value)
    return exp > 0 ? exp : null
  }

  async function removeReturning(kind: DatastoreKind, key: string, q: PgQuery = db): Promise<DatastoreValue | null> {
    target(kind, key)
    const { rows } = await q.query<{ value: Buffer }>('DELETE FROM espra_records WHERE kind = $1 AND key = $2 RETURNING value', [kind, key])
    return rows[0] === undefined ? null : decode(rows[0].value)
  }

  async function putIf(q: PgQuery, kind: DatastoreKind, key: string, bytes: Buffer, exp: number | null, match: DatastoreMatch | null): Promise<boolean> {
    for (;;) {
      const { rows } = await q.query<{ value: Buffer; version: string }>('SELECT value, version FROM espra_records WHERE kind = $1 AND key = $2', [kind, key])
      const current = rows[0]
      if (!matches(current === undefined ? null : decode(current.value), match)) return false
      const written = current === undefined
        ? await q.query('INSERT INTO espra_records (kind, key, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, key) DO NOTHING', [kind, key, bytes, exp])
        : await q.query(
          'UPDATE espra_records SET value = $3, expires_at = $4, version = version + 1 WHERE kind = $1 AND key = $2 AND version = $5',
          [kind, key, bytes, exp, current.version],
        )
      if (written.rowCount === 1) return true
      // Another writer came between the read and the write: judge its record instead.
    }
  }

  return {
    async get(kind, key) {
      target(kind, key)
      const { rows } = await db.query<{ value: Buffer }>('SELECT value FROM espra_records WHERE kind = $1 AND key = $2', [kind, key])
      return rows[0] === undefined ? null : decode(rows[0].value)
    },
    async put(kind, key, value) {
      target(kind, key)
      check(valueProblem(value))
      await db.query(
        `INSERT INTO espra_records (kind, key, value, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, version = espra_records.version + 1`,
        [kind, key, encode(value), expiry(kind, value)],
      )
    },
    async delete(kind, key) {
      return (await removeReturning(kind, key)) !== null
    },
    async consume(kind: DatastoreKind, key: string, opId?: string) {
      target(kind, key)
      return applyOnce(db, 'ds.consume', opId, (q) => removeReturning(kind, key, q))
    },
    async putIf(kind: DatastoreKind, key: string, value: DatastoreValue, match: DatastoreMatch | null, opId?: string) {
      target(kind, key)
      check(valueProblem(value))
      check(matchProblem(match))
      const bytes = encode(value)
      const exp = expiry(kind, value)
      return applyOnce(db, 'ds.putIf', opId, (q) => putIf(q, kind, key, bytes, exp, match))
    },
    /** Both writes in one transaction (with its op id's record when given): all or nothing. */
    async consumeAndInsert(take: DatastoreRef | null, insert: DatastoreEntryRef | null, opId?: string): Promise<ConsumeAndInsert> {
      checkConsumeAndInsert(take, insert)
      if (closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
      const bytes = insert === null ? null : encode(insert.value)
      const exp = insert === null ? null : expiry(insert.kind, insert.value)
      const apply = async (tx: PgQuery): Promise<ConsumeAndInsert> => {
        const read = async (): Promise<DatastoreValue | null> => {
          const { rows } = await tx.query<{ value: Buffer }>('SELECT value FROM espra_records WHERE kind = $1 AND key = $2', [insert!.kind, insert!.key])
          return rows[0] === undefined ? null : decode(rows[0].value)
        }
        if (take !== null && (await removeReturning(take.kind, take.key, tx)) === null) return { taken: false, inserted: false, current: insert === null ? null : await read() }
        if (insert === null) return { taken: true, inserted: false, current: null }
        // A concurrent insert of the same key makes this one wait for it, then do nothing; the read after sees it.
        const written = await tx.query('INSERT INTO espra_records (kind, key, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, key) DO NOTHING', [insert.kind, insert.key, bytes, exp])
        return written.rowCount === 1 ? { taken: true, inserted: true, current: insert.value } : { taken: true, inserted: false, current: await read() }
      }
      return opId === undefined ? db.transaction(apply) : applyOnce(db, 'ds.consumeAndInsert', opId, apply)
    },
    async list(kind: DatastoreKind, options: ListOptions = {}): Promise<DatastorePage> {
      check(kindProblem(kind))
      check(listProblem(options))
      if (closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
      const limit = options.limit ?? DEFAULT_LIST_LIMIT
      const { rows } = await db.query<{ key: string; value: Buffer }>(
        'SELECT key, value FROM espra_records WHERE kind = $1 AND key LIKE $2 AND key > $3 ORDER BY key LIMIT $4',
        [kind, likePrefix(options.prefix ?? ''), options.after ?? '', limit + 1],
      )
      const entries = rows.slice(0, limit).map((r) => ({ key: r.key, value: decode(r.value) }))
      return { entries, next: rows.length > limit ? entries.at(-1)!.key : null }
    },
    async putFenced(kind: DatastoreKind, key: string, value: DatastoreValue, fence: { holder: string; epoch: number }) {
      target(kind, key)
      check(valueProblem(value))
      const { rowCount } = await db.query(
        `WITH lease AS (SELECT 1 FROM espra_leader WHERE id = 1 AND holder = $5 AND epoch = $6 AND expires_at > ${NOW_MS} FOR SHARE)
         INSERT INTO espra_records (kind, key, value, expires_at) SELECT $1, $2, $3, $4 FROM lease
         ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, version = espra_records.version + 1`,
        [kind, key, encode(value), expiry(kind, value), fence.holder, fence.epoch],
      )
      return rowCount === 1
    },
    async removeExpiredRows(now: number) {
      if (closed) return 0
      const rows = (await db.query("DELETE FROM espra_records WHERE kind = 'appTables' AND expires_at IS NOT NULL AND expires_at <= $1", [now])).rowCount
      return rows + (await removeExpiredOps(db))
    },
    async close() {
      closed = true
    },
  }
}
