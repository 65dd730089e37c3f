/**
 * The embedded datastore the seed hosts (other nodes reach it over the meta
 * port: seed/datastore-ops.ts). Data lives under `<data-dir>/seed/`.
 *
 * Engine: LMDB through the `lmdb` package. It installs in seconds from
 * bundled prebuilt binaries (better-sqlite3 builds from source here, about
 * two minutes on every fresh install and CI run), it is a crash-safe
 * copy-on-write B-tree whose commits are durable when their promise
 * resolves, its write transactions are serialised (what `consume` needs to
 * be single-use), and it stores values as msgpack, the encoding the meta
 * port already speaks. What we give up is SQL, which the narrow Datastore
 * interface does not need.
 *
 * Schema: one named database per record kind plus `meta`, whose
 * `schemaVersion` record says which migrations have run. At open, every
 * migration newer than that runs in order, each in one write transaction
 * together with its version bump, so a failed migration leaves the store as
 * it was. A store written by a newer version is refused.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { open, type Database, type RootDatabase } from 'lmdb'
import { createError } from '../lib/core/errors.js'
import type { Flushable } from './tasks-embedded.js'
import {
  check, checkConsumeAndInsert, DATASTORE_KINDS, DEFAULT_LIST_LIMIT, keyProblem, kindProblem, listProblem, matches, matchProblem, valueProblem,
  type ConsumeAndInsert, type Datastore, type DatastoreEntry, type DatastoreEntryRef, type DatastoreRef, type DatastoreKind, type DatastoreMatch, type DatastorePage, type DatastoreValue, type ListOptions,
} from '../lib/storage/datastore.js'

export interface MigrationContext {
  readonly kinds: Readonly<Record<DatastoreKind, Database<DatastoreValue, string>>>
  readonly meta: Database<unknown, string>
}

export interface Migration {
  /** 1, 2, 3, ... in order. */
  readonly version: number
  readonly description: string
  /** Runs inside the write transaction that records `version`; use the *Sync methods. */
  up(ctx: MigrationContext): void
}

/** The schema's history. Append only: never edit or reorder a released migration. */
export const MIGRATIONS: readonly Migration[] = [
  // The per-kind databases are created when they are opened; nothing to move yet.
  { version: 1, description: 'one database per record kind', up: () => {} },
]

export interface EmbeddedDatastoreOptions {
  /** Directory for the store's files (the seed passes `<data-dir>/seed`). */
  readonly dir: string
  /** Tests pass their own history; defaults to {@link MIGRATIONS}. */
  readonly migrations?: readonly Migration[]
}

export interface EmbeddedDatastore extends Datastore, Flushable<Datastore> {
  /**
   * Deletes every record of `kind` the predicate picks, each checked again
   * inside its own write transaction (so a record rewritten since the scan
   * is judged by its new value). Returns how many went.
   */
  removeWhere(kind: DatastoreKind, pick: (value: DatastoreValue) => boolean): Promise<number>
  readonly schemaVersion: number
  /** The store's file. */
  readonly path: string
}

const VERSION_KEY = 'schemaVersion'

/** Opens (creating it if needed) and migrates the store. */
export async function openEmbeddedDatastore(opts: EmbeddedDatastoreOptions): Promise<EmbeddedDatastore> {
  const migrations = opts.migrations ?? MIGRATIONS
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw createError('ESPRA_ERR_INTERNAL', { reason: `embedded datastore migration #${i + 1} claims version ${m.version}: the migration list is out of order` })
  })
  const path = join(opts.dir, 'datastore.mdb')
  let root: RootDatabase
  try {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 })
    // One named database per kind plus the meta one; room to grow (maxDbs is a limit at open, not stored in the file).
    root = open({ path, maxDbs: 64, encoding: 'msgpack' })
  } catch (err) {
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: `datastore ${path}`, problem: (err as Error).message, path })
  }
  const meta = root.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' })
  const kinds = Object.fromEntries(
    DATASTORE_KINDS.map((k) => [k, root.openDB<DatastoreValue, string>({ name: `kind:${k}`, encoding: 'msgpack' })]),
  ) as Record<DatastoreKind, Database<DatastoreValue, string>>
  try {
    const version = migrate(root, { kinds, meta }, migrations)
    return new LmdbDatastore(root, kinds, version, path, true)
  } catch (err) {
    await root.close()
    throw err
  }
}

function migrate(root: RootDatabase, ctx: MigrationContext, migrations: readonly Migration[]): number {
  const current = (ctx.meta.get(VERSION_KEY) as number | undefined) ?? 0
  if (current > migrations.length) {
    throw createError('ESPRA_ERR_DATASTORE_SCHEMA', { store: 'the datastore',
      found: current, known: migrations.length,
    })
  }
  for (const m of migrations.slice(current)) {
    // transactionSync, not transaction: only the synchronous form aborts when the callback throws.
    root.transactionSync(() => {
      m.up(ctx)
      ctx.meta.putSync(VERSION_KEY, m.version)
    })
  }
  return migrations.length
}

/**
 * With `overlappingSync` (lmdb-js's default on Linux) a write's promise
 * resolves when its transaction is committed, visible to readers and safe
 * from a `kill -9`, but before the disk has it. Every write here also waits
 * for `flushed` (one flush covers every commit before it, so concurrent
 * writes share it), so what a write answered survives a power loss: the
 * product answers on it (mail 250, sendMail, upload complete, build push).
 * {@link unflushed} is the same store without that wait, for a group commit
 * that waits for {@link flushed} once before it answers.
 */
class LmdbDatastore implements EmbeddedDatastore {
  private view: LmdbDatastore | null = null

  constructor(
    private readonly root: RootDatabase,
    private readonly kinds: Record<DatastoreKind, Database<DatastoreValue, string>>,
    readonly schemaVersion: number,
    readonly path: string,
    private readonly flush: boolean,
    /** Shared with the unflushed view: closing one closes both. */
    private readonly state = { closed: false },
  ) {}

  unflushed(): Datastore {
    this.view ??= this.flush ? new LmdbDatastore(this.root, this.kinds, this.schemaVersion, this.path, false, this.state) : this
    return this.view
  }

  async flushed(): Promise<void> {
    await this.root.flushed
  }

  /** Resolves `result` once it is on disk (when this store waits for the flush). */
  private async durable<T>(result: T): Promise<T> {
    if (this.flush) await this.root.flushed
    return result
  }

  async get(kind: DatastoreKind, key: string): Promise<DatastoreValue | null> {
    return this.db(kind, key).get(key) ?? null
  }

  async put(kind: DatastoreKind, key: string, value: DatastoreValue): Promise<void> {
    const db = this.db(kind, key)
    check(valueProblem(value))
    await db.put(key, value)
    await this.durable(undefined)
  }

  async delete(kind: DatastoreKind, key: string): Promise<boolean> {
    return (await this.take(kind, key)) !== null
  }

  consume(kind: DatastoreKind, key: string): Promise<DatastoreValue | null> {
    return this.take(kind, key)
  }

  /** Read, compare and write in one write transaction: serialised with every other write. */
  async putIf(kind: DatastoreKind, key: string, value: DatastoreValue, match: DatastoreMatch | null): Promise<boolean> {
    const db = this.db(kind, key)
    check(valueProblem(value))
    check(matchProblem(match))
    return this.durable(await this.root.transaction(() => {
      if (!matches(db.get(key) ?? null, match)) return false
      db.putSync(key, value)
      return true
    }))
  }

  /** Both writes in one write transaction: serialised with every other write, all or nothing. */
  async consumeAndInsert(take: DatastoreRef | null, insert: DatastoreEntryRef | null): Promise<ConsumeAndInsert> {
    checkConsumeAndInsert(take, insert)
    this.checkOpen()
    const from = take === null ? null : this.kinds[take.kind]
    const to = insert === null ? null : this.kinds[insert.kind]
    return this.durable(await this.root.transaction((): ConsumeAndInsert => {
      if (from !== null) {
        if (from.get(take!.key) === undefined) return { taken: false, inserted: false, current: insert === null ? null : to!.get(insert.key) ?? null }
        from.removeSync(take!.key)
      }
      if (to === null) return { taken: true, inserted: false, current: null }
      const there = to.get(insert!.key)
      if (there !== undefined) return { taken: true, inserted: false, current: there }
      to.putSync(insert!.key, insert!.value)
      return { taken: true, inserted: true, current: insert!.value }
    }))
  }

  async list(kind: DatastoreKind, options: ListOptions = {}): Promise<DatastorePage> {
    check(kindProblem(kind))
    check(listProblem(options))
    this.checkOpen()
    const prefix = options.prefix ?? ''
    const limit = options.limit ?? DEFAULT_LIST_LIMIT
    const after = options.after
    const start = after !== undefined && after > prefix ? after : prefix
    const entries: DatastoreEntry[] = []
    for (const { key, value } of this.kinds[kind].getRange(start === '' ? {} : { start })) {
      if (key === after) continue
      if (!key.startsWith(prefix)) break
      if (entries.length === limit) return { entries, next: entries[entries.length - 1]!.key }
      entries.push({ key, value })
    }
    return { entries, next: null }
  }

  async removeWhere(kind: DatastoreKind, pick: (value: DatastoreValue) => boolean): Promise<number> {
    check(kindProblem(kind))
    this.checkOpen()
    const db = this.kinds[kind]
    let removed = 0
    for (const { key, value } of db.getRange({})) {
      if (!pick(value)) continue
      const gone = await this.root.transaction(() => {
        const now = db.get(key)
        if (now === undefined || !pick(now)) return false
        db.removeSync(key)
        return true
      })
      if (gone) removed++
    }
    return this.durable(removed)
  }

  async close(): Promise<void> {
    if (this.state.closed) return
    this.state.closed = true
    await this.root.close()
  }

  /** Get and delete in one write transaction: serialised with every other write. */
  private async take(kind: DatastoreKind, key: string): Promise<DatastoreValue | null> {
    const db = this.db(kind, key)
    return this.durable(await this.root.transaction(() => {
      const value = db.get(key)
      if (value === undefined) return null
      db.removeSync(key)
      return value
    }))
  }

  private db(kind: DatastoreKind, key: string): Database<DatastoreValue, string> {
    check(kindProblem(kind))
    check(keyProblem(key))
    this.checkOpen()
    return this.kinds[kind]
  }

  private checkOpen(): void {
    if (this.state.closed) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'datastore', problem: 'closed' })
  }
}
