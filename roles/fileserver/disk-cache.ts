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
 * Files: `<dir>/objects/<sha256 of the key>`, each one self-describing: a
 * first line `espra-cache-1`, a JSON line of metadata (key, size, etag,
 * content type and encoding, last-modified), then the object's bytes as
 * stored (compressed objects stay compressed). A fill is written to
 * `<dir>/tmp/` and renamed into place, so a reader sees a whole file or none.
 * Names are hashes, so no request path ever becomes a file path.
 *
 * LRU: the index is an insertion-ordered map, least recently served first;
 * children report hits (at most one message per key per child every few
 * seconds) and the parent moves the entry to the end. The order survives a
 * restart through the files' mtimes: the index is rebuilt from the directory
 * at start, oldest mtime first, and a served file's mtime is refreshed at
 * most once a minute. Eviction unlinks files: a child still streaming one
 * keeps its open descriptor, so nobody is cut off.
 *
 * Negative cache: a key the blob store does not have is remembered (bounded,
 * oldest forgotten first) until a `files.changed` push names it; the same
 * push drops a cached copy, since an upload may have replaced the object.
 */
import { createHash, randomBytes } from 'node:crypto'
import { constants, createWriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Logger } from '../../lib/core/log.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore, type BlobStore } from '../../lib/storage/blob-store.js'
import { parseFilesChangedPush, type FilesChanged } from '../../lib/transport/files-changed.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { registerDiskCacheMetrics } from './counters.js'

const MAGIC = 'espra-cache-1\n'
const NAME = /^[0-9a-f]{64}$/
/** The metadata line is small (a key is at most 1 KB); this bounds what a reader reads to find it. */
const HEAD_MAX = 8192
/** Keys remembered as missing; past this the oldest are forgotten (they are only asked for again). */
const NEGATIVE_MAX = 100_000
/** A served file's mtime (the LRU order after a restart) is refreshed at most this often. */
const TOUCH_PERSIST_MS = 60_000

export interface CachedMeta {
  readonly key: string
  readonly size: number
  readonly etag: string
  readonly contentType: string
  readonly contentEncoding: string | null
  /** Milliseconds since the epoch. */
  readonly lastModified: number
  /** The object's user metadata (an upload's `inline` and `filename`, upload-headers.ts); absent in files of earlier versions. */
  readonly metadata?: Readonly<Record<string, string>>
}

/** An open cached object: read the body from `offset` (the bytes after the metadata lines). */
export interface CachedFile {
  readonly fh: FileHandle
  readonly meta: CachedMeta
  readonly offset: number
}

/**
 * What a fill found: the object is in the cache now, the store has no such
 * key, it is larger than the whole cache, or the cache's disk has no room for
 * it (ENOSPC, EDQUOT). The last two are served straight from the store.
 */
export type FillResult = 'cached' | 'missing' | 'too-big' | 'no-space'

export const cacheName = (key: string): string => createHash('sha256').update(key).digest('hex')
const objectPath = (dir: string, name: string) => join(dir, 'objects', name)

/**
 * Opens the cached copy of `key`, or null when there is none (or it is not a
 * whole, valid cache file: then the parent fills it again).
 */
export async function openCached(dir: string, key: string): Promise<CachedFile | null> {
  let fh
  try {
    fh = await open(objectPath(dir, cacheName(key)), constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const buf = Buffer.alloc(HEAD_MAX)
    const { bytesRead } = await fh.read(buf, 0, HEAD_MAX, 0)
    const head = buf.subarray(0, bytesRead)
    const end = head.indexOf(10, MAGIC.length)
    if (head.subarray(0, MAGIC.length).toString('latin1') !== MAGIC || end < 0) throw new Error('not a cache file')
    const meta = JSON.parse(head.subarray(MAGIC.length, end).toString('utf8')) as CachedMeta
    const offset = end + 1
    const st = await fh.stat()
    // A hash collision or a short file is a miss, never wrong bytes.
    if (meta.key !== key || st.size !== offset + meta.size) throw new Error('cache file does not match')
    return { fh, meta, offset }
  } catch {
    await fh.close()
    return null
  }
}

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

  const negative = new Map<string, true>()
  const inflight = new Map<string, Promise<FillResult>>()
  /** Keys named by a files.changed while their fill was running: that fill's answer may be stale. */
  const stale = new Set<string>()

  function drop(name: string): void {
    const e = index.get(name)
    if (e === undefined) return
    index.delete(name)
    bytes -= e.size
    unlink(objectPath(dir, name)).catch(() => {})
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
    const header = Buffer.from(MAGIC + JSON.stringify({
      key, size: obj.size, etag: obj.etag, contentType: obj.contentType, contentEncoding: obj.contentEncoding,
      lastModified: obj.lastModified.getTime(), metadata: obj.metadata,
    } satisfies CachedMeta) + '\n')
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

  async function fillLoop(key: string): Promise<FillResult> {
    for (let attempt = 0; ; attempt++) {
      stale.delete(key)
      const result = await fetchOnce(key)
      // A files.changed arrived while fetching: what was fetched may predate it; fetch again (once).
      if (stale.has(key) && attempt === 0) {
        if (result === 'cached') drop(cacheName(key))
        continue
      }
      if (result === 'missing') {
        negative.set(key, true)
        if (negative.size > NEGATIVE_MAX) negative.delete(negative.keys().next().value!)
      }
      return result
    }
  }

  return {
    fill(key) {
      if (negative.has(key)) return Promise.resolve('missing')
      let p = inflight.get(key)
      if (p === undefined) {
        p = fillLoop(key).finally(() => {
          inflight.delete(key)
          stale.delete(key)
        })
        inflight.set(key, p)
      }
      return p
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
      if (all) {
        negative.clear()
        for (const key of inflight.keys()) stale.add(key)
      }
      for (const key of keys) {
        negative.delete(key)
        if (inflight.has(key)) stale.add(key)
        drop(cacheName(key))
      }
    },
    stats: () => ({ objects: index.size, bytes, fetches, negative: negative.size, noSpace }),
    async close() {
      await Promise.allSettled([...inflight.values()])
    },
  }
}

export interface CacheParent {
  readonly cache: DiskCache
  /** Answers the children's `cache-fill` requests; undefined for anything else. */
  onRequest(body: unknown): unknown
  /** Handles a child's `cache-hit`; false for anything else. */
  onMessage(body: unknown): boolean
  readonly handle: Handle
}

/**
 * The parent's side: opens the node's cache (and a blob store to fill it
 * from), follows `files.changed` pushes, and serves the children's requests.
 */
export async function startCacheParent(ctx: ParentContext): Promise<CacheParent> {
  const { config, log } = ctx
  const store = await createBlobStore(blobStoreConfig(config))
  const cache = await openDiskCache({ dir: config.cacheDir, maxBytes: config.cacheMaxBytes, store, log }).catch(async (err: unknown) => {
    await store.close()
    throw err
  })
  ctx.onPush((push) => {
    if (push.op !== 'files.changed') return
    try {
      const change: FilesChanged = parseFilesChangedPush(push.body)
      cache.changed(change.keys, change.all === true)
    } catch (err) {
      log.warn({ err }, 'malformed files.changed push ignored')
    }
  })
  registerDiskCacheMetrics(ctx.metrics, cache.stats)
  return {
    cache,
    onRequest(body) {
      if (!isMap(body)) return undefined
      if (body['t'] === 'cache-fill' && typeof body['key'] === 'string') return cache.fill(body['key'])
      return undefined
    },
    onMessage(body) {
      if (!isMap(body) || body['t'] !== 'cache-hit') return false
      if (typeof body['name'] === 'string') cache.served(body['name'])
      return true
    },
    handle: {
      async close() {
        await cache.close()
        await store.close()
      },
      destroy() {
        void store.close()
      },
    },
  }
}
/** A cached object's whole body in a child's memory. */
export interface HotObject {
  readonly meta: CachedMeta
  readonly body: Buffer
}

export interface HotCacheOptions {
  /** Bytes of bodies kept at most (least recently served dropped first). */
  readonly maxBytes: number
  /** Larger objects are never kept (they stream from the disk cache file). */
  readonly maxObjectBytes: number
}

/**
 * A child's in-memory layer over the disk cache: the whole bodies of small,
 * recently served objects, so a hit costs no open, read, stat or close and
 * no per-request buffer (the disk path copies every body out of the page
 * cache into a fresh buffer, and the garbage collector then frees it: the
 * main costs measured by bench/files.ts). Kept consistent the same way as the
 * disk cache: `forget` on every `files.changed` for the key (or all), and a
 * load that ran while such a change came in is not kept.
 */
export interface HotCache {
  get(key: string): HotObject | undefined
  /** Reads the body of an open cached file into memory when it fits; the caller still closes `file.fh`. */
  load(file: CachedFile): Promise<HotObject | null>
  forget(keys: readonly string[], all: boolean): void
  stats(): { objects: number; bytes: number }
}

export function createHotCache({ maxBytes, maxObjectBytes }: HotCacheOptions): HotCache {
  const entries = new Map<string, HotObject>()
  let bytes = 0
  let generation = 0

  function drop(key: string): void {
    const e = entries.get(key)
    if (e === undefined) return
    entries.delete(key)
    bytes -= e.body.length
  }

  return {
    get(key) {
      const e = entries.get(key)
      if (e === undefined) return undefined
      // Most recently served last: eviction takes from the front.
      entries.delete(key)
      entries.set(key, e)
      return e
    },
    async load({ fh, meta, offset }) {
      if (meta.size > maxObjectBytes || meta.size > maxBytes) return null
      const seen = generation
      const body = Buffer.allocUnsafeSlow(meta.size)
      const { bytesRead } = await fh.read(body, 0, meta.size, offset)
      if (bytesRead !== meta.size) return null
      const hot = { meta, body }
      if (seen !== generation) return hot
      drop(meta.key)
      for (const key of entries.keys()) {
        if (bytes + meta.size <= maxBytes) break
        drop(key)
      }
      entries.set(meta.key, hot)
      bytes += meta.size
      return hot
    },
    forget(keys, all) {
      generation++
      if (all) {
        entries.clear()
        bytes = 0
      }
      for (const key of keys) drop(key)
    },
    stats: () => ({ objects: entries.size, bytes }),
  }
}
