/**
 * The seed's PostgreSQL connection (`--datastore postgres://…`): one bounded
 * pool (`--datastore-pool`) shared by the datastore
 * (lib/storage/datastore-postgres.ts) and the task queues
 * (lib/tasks/queue-postgres.ts), the schema's versioned migrations, and the
 * one place a driver error becomes ours. {@link Postgres.transaction} runs
 * several statements on one pooled connection between BEGIN and COMMIT
 * (what an op applied once per op id needs: lib/storage/postgres-ops.ts).
 *
 * Faults: a query that cannot reach the database (refused, reset, timed
 * out, server shutting down or starting, login refused) fails with
 * `ESPRA_ERR_DATASTORE_UNAVAILABLE` (503, retryable) naming the host and the
 * driver's reason, never the password. The pool drops broken connections and
 * opens new ones on demand, so the seed recovers by itself once the
 * database is back; the outage and the recovery are logged once each.
 */
import pg from 'pg'
import { createError, EspraError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { maskPostgresUrl } from '../core/options-datastore.js'

export interface PostgresOptions {
  /** `postgres://user:password@host:port/database`. */
  readonly url: string
  /** Connections at most (`--datastore-pool`). */
  readonly max: number
  readonly log: Logger
  /** Tests pass their own history; defaults to {@link PG_MIGRATIONS}. */
  readonly migrations?: readonly PgMigration[]
}

export interface PgMigration {
  /** 1, 2, 3, ... in order. */
  readonly version: number
  readonly description: string
  /** Statements run in the migration's transaction, in order. */
  readonly sql: readonly string[]
}

/** A query's result rows. */
export type Rows<R> = { rows: R[]; rowCount: number }

/** Anything that runs one statement: the pool, or one transaction's connection. */
export interface PgQuery {
  query<R extends Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<Rows<R>>
}

export interface Postgres extends PgQuery {
  /**
   * Runs `fn` in one transaction (READ COMMITTED) on a connection of its
   * own from the pool: COMMIT when it resolves, ROLLBACK when it throws
   * (its error is thrown as it is; a statement's error is ours); the connection goes back to the pool in
   * every case, and is dropped rather than reused if it broke.
   */
  transaction<T>(fn: (tx: PgQuery) => Promise<T>): Promise<T>
  /** host:port/database, for messages (no user, no password). */
  readonly where: string
  readonly schemaVersion: number
  close(): Promise<void>
}

/**
 * The schema's history. Append only: never edit or reorder a released
 * migration. The task table's autovacuum settings: see docs/postgres.md,
 * "Keeping the task table small".
 */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'records by kind and key; task queues',
    sql: [
      `CREATE TABLE espra_records (
        kind text NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        expires_at bigint,
        PRIMARY KEY (kind, key)
      )`,
      `CREATE INDEX espra_records_expiry ON espra_records (expires_at) WHERE expires_at IS NOT NULL`,
      `CREATE TABLE espra_tasks (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue text NOT NULL,
        state "char" NOT NULL,
        name text NOT NULL,
        payload bytea NOT NULL,
        attempt integer NOT NULL DEFAULT 0,
        attempts integer NOT NULL,
        enqueued_at bigint NOT NULL,
        run_at bigint NOT NULL,
        lease_until bigint,
        failed_at bigint,
        error text
      ) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
              autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02)`,
      `CREATE INDEX espra_tasks_ready ON espra_tasks (queue, run_at, id) WHERE state = 'r'`,
      `CREATE INDEX espra_tasks_leased ON espra_tasks (queue, lease_until) WHERE state = 'l'`,
      `CREATE INDEX espra_tasks_dead ON espra_tasks (queue, id) WHERE state = 'x'`,
    ],
  },
  {
    version: 2,
    description: 'the seeds\' leader lease',
    sql: [
      // One row at most (id = 1): who leads, where nodes reach it, the fencing epoch, and when its lease ends (server clock, ms).
      `CREATE TABLE espra_leader (
        id smallint PRIMARY KEY CHECK (id = 1),
        holder text NOT NULL,
        address text NOT NULL,
        epoch bigint NOT NULL,
        expires_at bigint NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    description: 'op ids: non-idempotent ops applied once',
    sql: [
      // One row per op id (docs/postgres.md, "Op ids"): written in the op's own transaction, so its presence means
      // the op committed; `answer` is what the op answered (msgpack); swept in batches once `expires_at` passed.
      `CREATE TABLE espra_ops (
        op_id text COLLATE "C" PRIMARY KEY,
        op text NOT NULL,
        answer bytea,
        expires_at bigint NOT NULL
      ) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
              autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02)`,
      `CREATE INDEX espra_ops_expiry ON espra_ops (expires_at)`,
    ],
  },
  {
    version: 4,
    description: 'op ids: task ops recorded in their own statement',
    sql: [
      // The task queue's enqueue, lease and settle claim their op id and record what they did in the op's one
      // statement (lib/tasks/queue-postgres.ts), as task ids rather than a msgpack answer: a new nullable column,
      // so adding it rewrites nothing and seeds of the previous version keep working beside it.
      `ALTER TABLE espra_ops ADD COLUMN ids bigint[]`,
    ],
  },
]

/** Any advisory-lock key of ours: "espra" in ASCII. */
const MIGRATION_LOCK = 0x6573707261

/** SQLSTATE classes and codes that mean "not reachable now", not "this request was wrong". */
const UNAVAILABLE_SQLSTATE = /^(08|28|53|57P0[1-4]|3D000)/
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ENOENT'])

/** host:port/database of a URL, for messages. */
export function postgresWhere(url: string): string {
  try {
    const u = new URL(url)
    const host = u.hostname || u.searchParams.get('host') || 'localhost'
    return `${host}:${u.port || '5432'}${decodeURIComponent(u.pathname)}`
  } catch {
    return maskPostgresUrl(url)
  }
}

/** The driver's reason in one line, with any password in it masked. */
function reasonOf(err: unknown, url: string): string {
  const e = err as { message?: string; code?: string }
  let message = (e?.message ?? String(err)).split('\n')[0]!.trim()
  const password = (() => {
    try {
      return decodeURIComponent(new URL(url).password)
    } catch {
      return ''
    }
  })()
  if (password !== '') message = message.split(password).join('***')
  return message || e?.code || 'unknown error'
}

/** Whether a driver error means the database is out of reach (or refused the login). */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown }
  if (typeof e?.code === 'string' && (UNAVAILABLE_SQLSTATE.test(e.code) || UNAVAILABLE_ERRNO.has(e.code))) return true
  return typeof e?.message === 'string' && /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(e.message)
}

/** A driver error as ours: unreachable → `ESPRA_ERR_DATASTORE_UNAVAILABLE`; a refusal → `ESPRA_ERR_STORAGE_FAILED`. */
export function postgresError(err: unknown, url: string): EspraError {
  // Already ours (a schema refusal, a closed store): kept as it is.
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string' && code.startsWith('ESPRA_ERR_')) return err as EspraError
  const where = postgresWhere(url)
  const reason = reasonOf(err, url)
  if (isUnavailable(err)) {
    return createError('ESPRA_ERR_DATASTORE_UNAVAILABLE', { postgres: where, reason, retryable: true })
  }
  return createError('ESPRA_ERR_STORAGE_FAILED', { store: `PostgreSQL at ${where}`, problem: `refused a datastore statement: ${reason}`, postgres: where })
}

/**
 * Connects (one round trip proves the database is reachable and the login
 * right: start-up fails otherwise, naming the host and the driver's error)
 * and migrates the schema.
 */
export async function openPostgres(opts: PostgresOptions): Promise<Postgres> {
  const migrations = opts.migrations ?? PG_MIGRATIONS
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw createError('ESPRA_ERR_INTERNAL', { reason: `PostgreSQL migration #${i + 1} claims version ${m.version}: the migration list is out of order` })
  })
  const where = postgresWhere(opts.url)
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'espra-node seed',
  })
  let down = false
  // An idle connection the server dropped: the pool discards it; without a listener it would crash the process.
  pool.on('error', (err) => markDown(err))
  function markDown(err: unknown): void {
    if (down) return
    down = true
    opts.log.warn({ postgres: where, err: reasonOf(err, opts.url) }, 'datastore: PostgreSQL unreachable; retrying on every request')
  }
  function markUp(): void {
    if (!down) return
    down = false
    opts.log.info({ postgres: where }, 'datastore: PostgreSQL reachable again')
  }
  let closed = false
  const db: Postgres = {
    where,
    schemaVersion: 0,
    async query<R extends Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<Rows<R>> {
      if (closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
      try {
        const result = await pool.query(text, values as unknown[])
        markUp()
        return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 }
      } catch (err) {
        if (isUnavailable(err)) markDown(err)
        throw postgresError(err, opts.url)
      }
    },
    async transaction<T>(fn: (tx: PgQuery) => Promise<T>): Promise<T> {
      if (closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
      let client: pg.PoolClient
      try {
        client = await pool.connect()
      } catch (err) {
        if (isUnavailable(err)) markDown(err)
        throw postgresError(err, opts.url)
      }
      let broken: Error | undefined
      const tx: PgQuery = {
        async query<R extends Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<Rows<R>> {
          try {
            const result = await client.query(text, values as unknown[])
            return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 }
          } catch (err) {
            if (isUnavailable(err)) {
              broken = err as Error
              markDown(err)
            }
            throw postgresError(err, opts.url)
          }
        },
      }
      try {
        await tx.query('BEGIN')
        const out = await fn(tx)
        await tx.query('COMMIT')
        markUp()
        return out
      } catch (err) {
        if (broken === undefined) await client.query('ROLLBACK').catch((e: unknown) => (broken = e as Error))
        // The statements' errors are ours already; anything else is fn's own (thrown on purpose to roll back).
        throw err
      } finally {
        client.release(broken)
      }
    },
    async close() {
      if (closed) return
      closed = true
      await pool.end()
    },
  }
  try {
    const version = await migrate(pool, migrations, opts.url)
    opts.log.info({ postgres: where, schemaVersion: version }, 'datastore: PostgreSQL ready')
    return Object.assign(db, { schemaVersion: version })
  } catch (err) {
    closed = true
    await pool.end().catch(() => {})
    throw postgresError(err, opts.url)
  }
}

/**
 * Runs the missing migrations in one transaction that holds a
 * transaction-scoped advisory lock: seeds starting at once take turns, and
 * the second finds the work done. A schema newer than this build knows is
 * refused, never downgraded.
 */
async function migrate(pool: pg.Pool, migrations: readonly PgMigration[], url: string): Promise<number> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    await client.query(`CREATE TABLE IF NOT EXISTS espra_schema (
      version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM espra_schema')
    const current = rows[0]?.v ?? 0
    if (current > migrations.length) {
      throw createError('ESPRA_ERR_DATASTORE_SCHEMA', { store: `the datastore in PostgreSQL at ${postgresWhere(url)}`, found: current, known: migrations.length })
    }
    for (const m of migrations.slice(current)) {
      for (const statement of m.sql) await client.query(statement)
      await client.query('INSERT INTO espra_schema (version, description) VALUES ($1, $2)', [m.version, m.description])
    }
    await client.query('COMMIT')
    return migrations.length
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
}
