/**
 * The fileserver's disk cache of blob-store objects (`/f/<key>`), bounded by
 * `--cache-max-bytes`, in `--cache-dir`.
 *
 * One cache per node, owned by the parent; children only read it. Why not
 * one per child: children share the machine's disk and the bound is the
 * node's, and a per-child cache would fetch every object once per child.
 * Why the parent fills it: the parent is the one process every child already
 * talks to, so "N concurrent misses for one key cause exactly one blob-store
 * fetch" is one in-memory single-flight map there, with no lock files, no
 * stale-lock recovery and no waiters polling the directory. A child that
 * misses asks the parent (`cache-fill`, over IPC) and opens the file once the
 * parent answers. The parent also holds the LRU index and the negative cache.
 *
 * Files: one per object in the format of cache-file.ts. A fill is written to
 * `<dir>/tmp/` and renamed into place, so a reader sees a whole file or none.
 *
 * LRU: the index is an insertion-ordered map, least recently served first;
 * children report hits (at most one message per key per child every few
 * seconds) and the parent moves the entry to the end. The order survives a
 * restart through the files' mtimes: the index is rebuilt from the directory
 * at start, oldest mtime first, and a served file's mtime is refreshed at
 * most once a minute. Eviction unlinks files: a child still streaming one
 * keeps its open descriptor, so nobody is cut off.
 *
 * Negative cache (miss-cache.ts): a key the blob store does not have is
 * remembered until a `files.changed` push names it; the same push drops a
 * cached copy, since an upload may have replaced the object.
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream, unlinkSync } from 'node:fs'
import { mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Logger } from '../../lib/core/log.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import { cacheFileHead, cacheName, objectPath } from './cache-file.js'
import { createMissCache, type FillResult } from './miss-cache.js'

const NAME = /^[0-9a-f]{64}$/
/** A served file's mtime (the LRU order after a restart) is refreshed at most this often. */
const TOUCH_PERSIST_MS = 60_000

export interface DiskCache {
  /** Makes `key` present in the cache if the store has it; concurrent calls for one key share one fetch. */
  fill(key: string): Promise<FillResult>
  /** A child served the object named `name` (cacheName of its key). */
  served(name: string): void
  /** Keys that now exist or changed: forget they were missing, drop cached copies; `all`: forget every miss. */
  changed(keys: readonly string[], all?: boolean): void
  stats(): { objects: number; bytes: number; fetches: number; negative: number; noSpace: number }
  close(): Promise<void>
}

export interface DiskCacheOptions {
  readonly dir: string
  readonly maxBytes: number
  readonly store: BlobStore
  readonly log: Logger
}

interface Entry {
  size: number
  persistedAt: number
}

/** Opens the cache in `dir` (created if needed), rebuilding its index from the files there. */
export async function openDiskCache({ dir, maxBytes, store, log }: DiskCacheOptions): Promise<DiskCache> {
  const objects = join(dir, 'objects')
  const tmp = join(dir, 'tmp')
  await mkdir(objects, { recursive: true, mode: 0o750 })
  // Half-written fills of an earlier run: never renamed into place, so nobody reads them.
  await rm(tmp, { recursive: true, force: true })
  await mkdir(tmp, { mode: 0o750 })

  const index = new Map<string, Entry>()
  let bytes = 0
  let reserved = 0
  let fetches = 0
  let noSpace = 0
  let noSpaceLoggedAt = 0
  const found: { name: string; size: number; mtime: number }[] = []
  for (const name of await readdir(objects)) {
    const path = join(objects, name)
    if (!NAME.test(name)) {
      await rm(path, { recursive: true, force: true })
      continue
    }
    const st = await stat(path).catch(() => null)
    if (st?.isFile()) found.push({ name, size: st.size, mtime: st.mtimeMs })
  }
  found.sort((a, b) => a.mtime - b.mtime)
  for (const f of found) {
    index.set(f.name, { size: f.size, persistedAt: f.mtime })
    bytes += f.size
  }

  const misses = createMissCache()

  /** Forgets a cached copy; `now`: its file is gone when this returns (a changed object must not be read once more). */
  function drop(name: string, now = false): void {
    const e = index.get(name)
    if (e === undefined) return
    index.delete(name)
    bytes -= e.size
    const path = objectPath(dir, name)
    if (!now) return void unlink(path).catch(() => {})
    try {
      unlinkSync(path)
    } catch {
      // already gone
    }
  }

  /** Evicts least recently served objects until `incoming` more bytes fit. */
  function makeRoom(incoming: number): void {
    for (const name of index.keys()) {
      if (bytes + reserved + incoming <= maxBytes) break
      drop(name)
    }
  }
  makeRoom(0)
  log.info({ dir, objects: index.size, bytes, maxBytes }, 'disk cache opened')

  async function fetchOnce(key: string): Promise<FillResult> {
    const name = cacheName(key)
    if (index.has(name)) {
      const present = await stat(objectPath(dir, name)).then(() => true, () => false)
      if (present) return 'cached'
      drop(name)
    }
    fetches++
    const obj = await store.get(key)
    if (obj === null) return 'missing'
    const header = cacheFileHead({
      key, size: obj.size, etag: obj.etag, contentType: obj.contentType, contentEncoding: obj.contentEncoding,
      lastModified: obj.lastModified.getTime(), metadata: obj.metadata,
    })
    const total = header.length + obj.size
    if (total > maxBytes) {
      obj.body.destroy()
      return 'too-big'
    }
    makeRoom(total)
    reserved += total
    const temp = join(tmp, `${name}.${process.pid}.${randomBytes(6).toString('hex')}`)
    try {
      let written = 0
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          written += chunk.length
          done(null, chunk)
        },
      })
      const out = createWriteStream(temp, { flags: 'wx', mode: 0o640 })
      out.write(header)
      await pipeline(obj.body, counter, out)
      if (written !== obj.size) throw new Error(`blob store sent ${written} of ${obj.size} bytes for ${key}`)
      await rename(temp, objectPath(dir, name))
    } catch (err) {
      obj.body.destroy()
      await unlink(temp).catch(() => {})
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        // Every miss meets the full disk again: one line a minute says so, with the count.
        if (noSpace++ === 0 || Date.now() - noSpaceLoggedAt > 60_000) {
          noSpaceLoggedAt = Date.now()
          log.warn({ key, size: obj.size, code, bytes, maxBytes, noSpace }, 'disk cache: no room on its disk; objects that do not fit are served from the blob store')
        }
        return 'no-space'
      }
      throw err
    } finally {
      reserved -= total
    }
    // Replaced by the rename: forget the old entry's bytes, not the new file.
    const old = index.get(name)
    if (old !== undefined) bytes -= old.size
    index.delete(name)
    index.set(name, { size: total, persistedAt: Date.now() })
    bytes += total
    makeRoom(0)
    return 'cached'
  }

  return {
    fill(key) {
      if (misses.has(key)) return Promise.resolve('missing')
      // A files.changed while fetching: what was fetched may predate it; the cached copy goes, and it is fetched again.
      return misses.fill(key, () => fetchOnce(key), (stale) => {
        if (stale === 'cached') drop(cacheName(key))
      })
    },
    served(name) {
      const e = index.get(name)
      if (e === undefined) return
      index.delete(name)
      index.set(name, e)
      const now = Date.now()
      if (now - e.persistedAt < TOUCH_PERSIST_MS) return
      e.persistedAt = now
      const t = new Date(now)
      utimes(objectPath(dir, name), t, t).catch(() => {})
    },
    changed(keys, all = false) {
      misses.changed(keys, all)
      for (const key of keys) drop(cacheName(key), true)
    },
    stats: () => ({ objects: index.size, bytes, fetches, negative: misses.size, noSpace }),
    close: () => misses.settled(),
  }
}

