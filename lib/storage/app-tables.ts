/**
 * The application's tables (`ctx.tables` in app code, docs/app-api.md): named
 * key/value tables with an optional TTL per row, kept in the datastore's
 * `appTables` kind under `<table>/<key>`. A row is `{v, exp}` (`exp` 0: no
 * expiry). Expired rows read as absent at once and are deleted by the seed's
 * sweep ({@link isExpiredRow}), so an expired row never comes back.
 */
import { createError, EspraError } from '../core/errors.js'
import { keyProblem, MAX_LIST_LIMIT, valueProblem, type Datastore, type DatastoreValue } from './datastore.js'

const TABLE = /^[a-z0-9][a-z0-9_-]{0,63}$/
/** Room left in the 512-byte datastore key for `<table>/`. */
export const MAX_ROW_KEY_BYTES = 400

export interface Row {
  readonly key: string
  readonly value: unknown
  /** Epoch ms when the row expires; 0: never. */
  readonly expiresAt: number
}

export interface RowPage {
  readonly rows: Row[]
  /** Pass as `after` for the next page; null when this was the last. */
  readonly next: string | null
}

export interface AppTables {
  get(table: string, key: string): Promise<unknown>
  /** `ttlMs` omitted or 0: kept until deleted. Durable when the promise resolves. */
  set(table: string, key: string, value: unknown, ttlMs?: number): Promise<void>
  /** True when there was a (live) row. */
  delete(table: string, key: string): Promise<boolean>
  /** Live rows in key order, optionally under a key prefix. */
  list(table: string, options?: { prefix?: string; after?: string; limit?: number }): Promise<RowPage>
}

function invalid(field: string, reason: string): EspraError {
  return createError('ESPRA_ERR_DATASTORE_INVALID', { field, reason })
}

function checkTable(table: unknown): asserts table is string {
  if (typeof table !== 'string' || !TABLE.test(table)) throw invalid('table', 'must be 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit')
}

function checkKey(key: unknown, field = 'key'): asserts key is string {
  if (typeof key !== 'string' || keyProblem(key) || Buffer.byteLength(key) > MAX_ROW_KEY_BYTES) {
    throw invalid(field, `must be 1 to ${MAX_ROW_KEY_BYTES} bytes of text without control characters`)
  }
}

const isLive = (row: DatastoreValue, now: number): boolean => {
  const exp = row['exp']
  return typeof exp !== 'number' || exp === 0 || exp > now
}

const rowOf = (table: string, key: string, value: DatastoreValue): Row => ({
  key: key.slice(table.length + 1),
  value: value['v'],
  expiresAt: typeof value['exp'] === 'number' ? value['exp'] : 0,
})

export function createAppTables(store: Datastore, now: () => number = Date.now): AppTables {
  return {
    async get(table, key) {
      checkTable(table)
      checkKey(key)
      const row = await store.get('appTables', `${table}/${key}`)
      return row !== null && isLive(row, now()) ? row['v'] : undefined
    },
    async set(table, key, value, ttlMs = 0) {
      checkTable(table)
      checkKey(key)
      if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 0) throw invalid('ttlMs', 'must be a finite number >= 0')
      if (value === undefined) throw invalid('value', 'must not be undefined (delete the row instead)')
      const row = { v: value, exp: ttlMs > 0 ? now() + Math.ceil(ttlMs) : 0 }
      const problem = valueProblem(row)
      if (problem) throw invalid('value', `must be ${problem.allowed}`)
      await store.put('appTables', `${table}/${key}`, row)
    },
    async delete(table, key) {
      checkTable(table)
      checkKey(key)
      const row = await store.consume('appTables', `${table}/${key}`)
      return row !== null && isLive(row, now())
    },
    async list(table, options = {}) {
      checkTable(table)
      const { prefix = '', after, limit = 100 } = options
      if (prefix !== '') checkKey(prefix, 'prefix')
      if (after !== undefined) checkKey(after, 'after')
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw invalid('limit', `must be an integer from 1 to ${MAX_LIST_LIMIT}`)
      const base = `${table}/`
      const t = now()
      const rows: Row[] = []
      let cursor = after === undefined ? undefined : base + after
      // Expired rows not swept yet are skipped, so a page may take more than one datastore page.
      for (;;) {
        const page = await store.list('appTables', { prefix: base + prefix, ...(cursor !== undefined ? { after: cursor } : {}), limit })
        for (const e of page.entries) {
          if (!isLive(e.value, t)) continue
          rows.push(rowOf(table, e.key, e.value))
          if (rows.length === limit) return { rows, next: page.next === null && e === page.entries.at(-1) ? null : rows.at(-1)!.key }
        }
        if (page.next === null) return { rows, next: null }
        cursor = page.next
      }
    },
  }
}

/** When a stored row expires (epoch ms; 0: never): what a backend may index for its sweep. */
export const rowExpiresAt = (row: DatastoreValue): number => (typeof row['exp'] === 'number' ? row['exp'] : 0)

/** For the seed's sweep: a stored row whose TTL has passed. */
export const isExpiredRow = (row: DatastoreValue, now: number): boolean => !isLive(row, now)
