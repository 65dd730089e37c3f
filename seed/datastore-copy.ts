/**
 * `espra-node datastore copy --from <data-dir> --to postgres://…`: moves a
 * cluster that outgrew one seed from the embedded store (LMDB files under
 * `<data-dir>/seed`) to PostgreSQL without losing anything
 * (docs/postgres.md, "Moving up").
 *
 * What is copied: every record of every datastore kind (`datastore.mdb`)
 * and every task of both embedded queues (`tasks.mdb` → queue `tasks`,
 * `mail-out.mdb` → queue `mailq`): ready and delayed tasks stay so, dead
 * letters stay dead with their error. Leases live only in a running seed's
 * memory, so a task that was leased when the seed stopped is stored as
 * ready and copied as ready. Task ids are new (both embedded queues number
 * from 1; PostgreSQL numbers every queue from one sequence); their order is
 * kept.
 *
 * The LMDB files are read here directly, read-only, in the layouts
 * datastore-embedded.ts and tasks-embedded.ts write (their record type and
 * schema versions come from there); a newer schema is refused. A store a running process holds open is refused
 * (found through /proc on Linux): a copy taken while a seed writes would
 * be a mix of two moments.
 *
 * The target is migrated first (lib/storage/postgres.ts), then written in
 * one transaction, streamed from the store in batches of {@link BATCH}
 * (never held in memory whole): a failed copy leaves nothing behind. A target with
 * records or tasks is refused, naming what is there, unless `--force`
 * (records with the same kind and key are then replaced, tasks added).
 */
import { existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { open, type RootDatabase } from 'lmdb'
import { Packr } from 'msgpackr'
import pg from 'pg'
import { createError } from '../lib/core/errors.js'
import { createLogger } from '../lib/core/log.js'
import { datastoreUrl, maskPostgresUrl } from '../lib/core/options-datastore.js'
import { rowExpiresAt } from '../lib/storage/app-tables.js'
import { DATASTORE_KINDS, type DatastoreKind, type DatastoreValue } from '../lib/storage/datastore.js'
import { openPostgres, postgresError } from '../lib/storage/postgres.js'
import { MIGRATIONS } from './datastore-embedded.js'
import { TASKS_SCHEMA_VERSION, type TaskRecord } from './tasks-file.js'

export interface DatastoreCopyOptions {
  from?: string
  to?: string
  force?: boolean
}

/** Rows per INSERT. */
const BATCH = 500
/** The embedded queues' files and the PostgreSQL queue each becomes. */
const QUEUES = [
  { file: 'tasks.mdb', queue: 'tasks' },
  { file: 'mail-out.mdb', queue: 'mailq' },
] as const

interface TaskCopy {
  readonly state: 'r' | 'x'
  readonly name: string
  readonly payload: Buffer
  readonly attempt: number
  readonly attempts: number
  readonly enqueuedAt: number
  readonly runAt: number
  readonly failedAt: number | null
  readonly error: string | null
}

interface QueueCounts {
  ready: number
  delayed: number
  dead: number
}

// Plain msgpack maps, as lib/storage/datastore-postgres.ts writes them.
const packr = new Packr({ useRecords: false })

function usage(option: string, reason: string): never {
  throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason })
}

/** Pids (other than ours) that hold one of `files` open, read from /proc; empty where there is no /proc. */
function holdersOf(files: readonly string[]): number[] {
  if (!existsSync('/proc/self/fd')) return []
  // The kernel names an open file by its real path: compare with that (a data dir reached through a symlink).
  const wanted = new Set(files.filter((f) => existsSync(f)).map((f) => realpathSync(f)))
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${entry}/fd`)
    } catch {
      continue // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`)
      } catch {
        continue
      }
      if (wanted.has(target)) {
        pids.push(Number(entry))
        break
      }
    }
  }
  return pids
}

function openReadOnly(path: string): RootDatabase {
  try {
    return open({ path, readOnly: true, maxDbs: 64, encoding: 'msgpack' })
  } catch (err) {
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: path, problem: `cannot read: ${(err as Error).message}`, path })
  }
}

function checkSchema(root: RootDatabase, path: string, known: number): void {
  const version = root.openDB<number, string>({ name: 'meta', encoding: 'msgpack' }).get('schemaVersion')
  if (version !== undefined && version > known) {
    throw createError('ESPRA_ERR_DATASTORE_SCHEMA', { store: path, found: version, known })
  }
}

/** The embedded store (and a queue) opened read-only, its schema checked; null for a queue file that is not there (an empty queue). */
function openSource(path: string, known: number, optional: boolean): RootDatabase | null {
  if (optional && !existsSync(path)) return null
  const root = openReadOnly(path)
  try {
    checkSchema(root, path, known)
    return root
  } catch (err) {
    void root.close()
    throw err
  }
}

/** Yields `items` in arrays of at most {@link BATCH}: the store is streamed, never held in memory whole. */
function* batches<T>(items: Iterable<T>): Iterable<T[]> {
  let batch: T[] = []
  for (const item of items) {
    batch.push(item)
    if (batch.length === BATCH) {
      yield batch
      batch = []
    }
  }
  if (batch.length > 0) yield batch
}

/** One embedded task as its PostgreSQL row; counts it. */
function taskCopy(r: TaskRecord, now: number, counts: QueueCounts): TaskCopy {
  const payload = Buffer.from(r.p.buffer, r.p.byteOffset, r.p.byteLength)
  const base = { name: r.n, payload, attempt: r.a, attempts: r.m, enqueuedAt: r.e, error: r.err ?? null }
  if (r.s === 'x') {
    counts.dead++
    return { ...base, state: 'x', runAt: r.d ?? r.e, failedAt: r.f ?? now }
  }
  // Ready ones keep their place in line (the queue's order is run_at, then id); a retry's time is kept.
  const runAt = r.s === 'w' ? r.d ?? r.e : r.e
  if (runAt > now) counts.delayed++
  else counts.ready++
  return { ...base, state: 'r', runAt, failedAt: null }
}

/** What the target already holds, as a sentence; null when empty. */
async function contentsOf(client: pg.Client): Promise<string | null> {
  const records = await client.query<{ kind: string; n: number }>('SELECT kind, count(*)::int AS n FROM espra_records GROUP BY kind ORDER BY kind')
  const tasks = await client.query<{ queue: string; n: number }>('SELECT queue, count(*)::int AS n FROM espra_tasks GROUP BY queue ORDER BY queue')
  const parts = [
    ...records.rows.map((r) => `${r.n} ${r.kind}`),
    ...tasks.rows.map((r) => `${r.n} task${r.n === 1 ? '' : 's'} in queue ${r.queue}`),
  ]
  return parts.length === 0 ? null : parts.join(', ')
}

export async function runDatastoreCopy(opts: DatastoreCopyOptions): Promise<void> {
  if (opts.from === undefined) usage('--from', 'the data directory of a stopped embedded seed is required')
  // From the environment too, so the password need not be on the command line (ps).
  const rawTo = opts.to ?? process.env['ESPRA_DATASTORE']
  if (rawTo === undefined || rawTo === '') usage('--to', 'a postgres://user:password@host:5432/database URL is required (or ESPRA_DATASTORE)')
  let to: string
  try {
    to = datastoreUrl(rawTo)
  } catch (reason) {
    usage('--to', String(reason))
  }
  if (to === 'embedded') usage('--to', 'must be a postgres:// URL (the copy goes from the embedded store to PostgreSQL)')
  const masked = maskPostgresUrl(to)
  const dataDir = resolve(opts.from)
  const seedDir = join(dataDir, 'seed')
  const storeFile = join(seedDir, 'datastore.mdb')
  if (!existsSync(storeFile)) usage('--from', `no embedded datastore at ${storeFile} (give the --data-dir of the seed)`)
  const files = [storeFile, ...QUEUES.map((q) => join(seedDir, q.file))]
  const holders = holdersOf(files)
  if (holders.length > 0) {
    throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: seedDir, problem: `open in a running process (pid ${holders.join(', ')}): stop the seed first, then copy`, pids: holders })
  }

  // Both sources open (schemas checked) before the target is touched; read as the copy goes, in one read transaction each.
  const now = Date.now()
  const roots: RootDatabase[] = []
  const store = openSource(storeFile, MIGRATIONS.length, false)!
  roots.push(store)
  const client = new pg.Client({ connectionString: to, connectionTimeoutMillis: 5000, application_name: 'espra-node datastore copy' })
  client.on('error', () => {}) // a connection lost mid-copy fails the statement in flight; that is reported below
  // pg's end() on a client that never connected never settles (and holds nothing open: the process would just exit 0).
  let connected = false
  try {
    const queues = QUEUES.map((q) => {
      const root = openSource(join(seedDir, q.file), TASKS_SCHEMA_VERSION, true)
      if (root !== null) roots.push(root)
      return { ...q, root, copied: 0, counts: { ready: 0, delayed: 0, dead: 0 } as QueueCounts }
    })
    // Migrations (and the one-line refusal of a wrong password or an unreachable host) as a seed does them.
    const migrated = await openPostgres({ url: to, max: 1, log: createLogger('silent', { role: 'cli', node: 'datastore-copy' }) })
    await migrated.close()
    await client.connect()
    connected = true
    await client.query('BEGIN')
    const there = await contentsOf(client)
    if (there !== null && opts.force !== true) {
      throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--to', reason: `${masked} is not empty (${there}); copy into an empty database, or pass --force to replace records with the same kind and key and add the tasks` })
    }
    const copied = new Map<DatastoreKind, number>()
    for (const kind of DATASTORE_KINDS) {
      const db = store.openDB<DatastoreValue, string>({ name: `kind:${kind}`, encoding: 'msgpack' })
      let n = 0
      for (const batch of batches(db.getRange({}))) {
        await client.query(
          `INSERT INTO espra_records (kind, key, value, expires_at)
           SELECT $1, r.key, r.value, r.exp FROM unnest($2::text[], $3::bytea[], $4::bigint[]) AS r(key, value, exp)
           ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, version = espra_records.version + 1`,
          [kind, batch.map((e) => e.key), batch.map((e) => packr.pack(e.value)), batch.map((e) => (kind === 'appTables' && rowExpiresAt(e.value) > 0 ? rowExpiresAt(e.value) : null))],
        )
        n += batch.length
      }
      copied.set(kind, n)
    }
    for (const q of queues) {
      if (q.root === null) continue
      const records = q.root.openDB<TaskRecord, number>({ name: 'tasks', encoding: 'msgpack' }).getRange({})
      for (const stored of batches(records)) {
        const batch = stored.map(({ value }) => taskCopy(value, now, q.counts))
        // Ids drawn in the batch's order (ORDER BY before the identity's nextval), so the copy keeps the queue's order.
        await client.query(
          `INSERT INTO espra_tasks (queue, state, name, payload, attempt, attempts, enqueued_at, run_at, failed_at, error)
           SELECT $1, r.state::"char", r.name, r.payload, r.attempt, r.attempts, r.enqueued_at, r.run_at, r.failed_at, r.error
           FROM unnest($2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[])
             WITH ORDINALITY AS r(state, name, payload, attempt, attempts, enqueued_at, run_at, failed_at, error, ord)
           ORDER BY r.ord`,
          [
            q.queue, batch.map((x) => x.state), batch.map((x) => x.name), batch.map((x) => x.payload), batch.map((x) => x.attempt),
            batch.map((x) => x.attempts), batch.map((x) => x.enqueuedAt), batch.map((x) => x.runAt), batch.map((x) => x.failedAt), batch.map((x) => x.error),
          ],
        )
        q.copied += batch.length
      }
    }
    await client.query('COMMIT')
    console.log(`copied ${dataDir} (embedded) to ${masked}${there !== null ? ` (--force: it already held ${there})` : ''}`)
    let total = 0
    for (const [kind, n] of copied) {
      total += n
      console.log(`  ${kind.padEnd(18)} ${n}`)
    }
    console.log(`  ${'records'.padEnd(18)} ${total} in all`)
    for (const q of queues) {
      console.log(`  tasks ${q.queue.padEnd(12)} ${q.copied} (${q.counts.ready} ready, ${q.counts.delayed} delayed, ${q.counts.dead} dead)`)
    }
  } catch (err) {
    if (connected) await client.query('ROLLBACK').catch(() => {})
    throw postgresError(err, to)
  } finally {
    if (connected) await client.end().catch(() => {})
    for (const root of roots) await root.close().catch(() => {})
  }
}
