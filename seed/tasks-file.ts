/**
 * The embedded task queue's file (seed/tasks-embedded.ts): an LMDB
 * environment with a `meta` database (schema version, the persisted end of
 * the id block) and a `tasks` database of {@link TaskRecord}s by seq. Also
 * what `datastore copy` reads (seed/datastore-copy.ts).
 */
import { mkdirSync } from 'node:fs'
import { open, type Database, type RootDatabase } from 'lmdb'
import { createError } from '../lib/core/errors.js'

/** The queue file's schema (also what `datastore copy` reads). */
export const TASKS_SCHEMA_VERSION = 1

/** A stored task. Short keys: every enqueue writes one. */
export interface TaskRecord {
  /** name */
  n: string
  /** payload (msgpack bytes) */
  p: Uint8Array
  /** attempts used so far */
  a: number
  /** attempts allowed */
  m: number
  /** enqueued at (ms) */
  e: number
  /** r: ready, w: waiting for `d`, x: dead */
  s: 'r' | 'w' | 'x'
  d?: number
  err?: string
  /** failed at (ms), for dead letters */
  f?: number
}

export interface TasksFile {
  readonly root: RootDatabase
  readonly meta: Database<number, string>
  readonly tasks: Database<TaskRecord, number>
}

/** Opens (creating it if needed) the queue file at `path` in `dir`; refuses a schema newer than this build's. */
export async function openTasksFile(dir: string, path: string): Promise<TasksFile> {
  let root: RootDatabase
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    root = open({ path, maxDbs: 4, encoding: 'msgpack' })
  } catch (err) {
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: `task queue ${path}`, problem: (err as Error).message, path })
  }
  const meta = root.openDB<number, string>({ name: 'meta', encoding: 'msgpack' })
  const version = meta.get('schemaVersion')
  if (version !== undefined && version > TASKS_SCHEMA_VERSION) {
    await root.close()
    throw createError('ESPRA_ERR_DATASTORE_SCHEMA', { store: 'the task queue', found: version, known: TASKS_SCHEMA_VERSION })
  }
  if (version === undefined) await meta.put('schemaVersion', TASKS_SCHEMA_VERSION)
  const tasks = root.openDB<TaskRecord, number>({ name: 'tasks', encoding: 'msgpack' })
  return { root, meta, tasks }
}
