/**
 * A fileserver child's way to blob-store objects: its memory layer
 * (hot-cache.ts), the node's disk cache (filled by the parent: one fetch per
 * key however many requests miss at once), its negative cache (cleared by
 * `files.changed`), and the store itself for objects larger than the cache
 * or that its disk has no room for. `/f/` (files-route.ts) and vhost files
 * (vhost-files.ts) serve through it.
 *
 * Objects up to 2 MB, once read from the disk cache, are kept whole in the
 * child's memory (64 MB per child but at most a quarter of
 * `--cache-max-bytes`, least recently served dropped first, forgotten on
 * `files.changed` like the negative cache): a hit then costs no file open,
 * read or per-request buffer.
 */
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { createError } from '../../lib/core/errors.js'
import { sendJson } from '../../lib/http/server.js'
import type { Flow } from '../../lib/http/stream-body.js'
import type { HttpResponse } from '../../lib/http/uws.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore, type BlobStore } from '../../lib/storage/blob-store.js'
import { parseFilesChangedPush } from '../../lib/transport/files-changed.js'
import { cacheName, openCached, type CachedMeta } from './cache-file.js'
import type { CacheToParent } from './cache-parent.js'
import type { FileCounters } from './counters.js'
import { createHotCache } from './hot-cache.js'
import { createMissCache, type FillResult } from './miss-cache.js'
import { answerObject, type Ask, type ServeOptions } from './object-answer.js'

/** A fill may download a large object before it answers. */
const FILL_TIMEOUT_MS = 300_000
/** A child reports a hit on one key to the parent (for LRU) at most this often. */
const HIT_REPORT_MS = 5000
/** Keys whose last hit report is remembered; past this the memory starts over. */
const REPORTED_MAX = 100_000
/** Per child: small objects are served from memory once read from the disk cache (HotCache; bench/files.ts shows why). */
const HOT_MAX_BYTES = 64 * 1024 ** 2
const HOT_MAX_OBJECT_BYTES = 2 * 1024 ** 2

const READ_CHUNK = 64 * 1024

/** Bytes `start`..`end` (inclusive) of an open file, in chunks of at most 64 KB. */
async function* readSpan(fh: FileHandle, start: number, end: number): AsyncGenerator<Buffer> {
  for (let at = start; at <= end;) {
    const n = Math.min(READ_CHUNK, end - at + 1)
    const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(n), 0, n, at)
    if (bytesRead === 0) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'disk cache', problem: 'a file ended early' })
    yield buffer.subarray(0, bytesRead)
    at += bytesRead
  }
}

/** A body in memory as the `OpenSpan` answerObject takes: one chunk, no copy. */
const fromMemory = (body: Buffer) => (start: number, end: number): Readable => Readable.from([body.subarray(start, end + 1)])

/** Answers a GET or HEAD with the blob-store object `ask.key`, through the node's disk cache. */
export interface FileServing extends Handle {
  serve(res: HttpResponse, ask: Ask, flow: Flow, options: ServeOptions): Promise<void>
}

/**
 * The child's way to serve blob-store objects: disk cache (filled by the
 * parent), negative cache (cleared by `files.changed`), direct streaming of
 * objects larger than the cache or that the cache's disk has no room for.
 * Used by `/f/` and by vhost files.
 */
export function createFileServing(ctx: ChildContext, counters: FileCounters): FileServing {
  const { config, log } = ctx
  const dir = config.cacheDir
  const misses = createMissCache()
  const reported = new Map<string, number>()
  let direct: Promise<BlobStore> | null = null

  // Never more than a quarter of the disk cache: memory stays a small layer over it, not a second cache.
  const hot = createHotCache({ maxBytes: Math.min(HOT_MAX_BYTES, Math.floor(config.cacheMaxBytes / 4)), maxObjectBytes: HOT_MAX_OBJECT_BYTES })
  counters.register(ctx.metrics, hot.stats)
  function forget(keys: readonly string[], all: boolean): void {
    hot.forget(keys, all)
    misses.changed(keys, all)
  }
  ctx.onPush((push) => {
    if (push.op !== 'files.changed') return
    try {
      const change = parseFilesChangedPush(push.body)
      forget(change.keys, change.all === true)
    } catch (err) {
      log.warn({ err }, 'malformed files.changed push ignored')
    }
  })

  /** One IPC request per key at a time from this child; the parent shares one fetch among all children. */
  const fill = (key: string): Promise<FillResult> =>
    misses.fill(key, () => ctx.parent.request<FillResult>({ t: 'cache-fill', key } satisfies CacheToParent, FILL_TIMEOUT_MS))

  function hit(key: string): void {
    const now = Date.now()
    if (now - (reported.get(key) ?? 0) < HIT_REPORT_MS) return
    if (reported.size > REPORTED_MAX) reported.clear()
    reported.set(key, now)
    ctx.parent.send({ t: 'cache-hit', name: cacheName(key) } satisfies CacheToParent)
  }

  const notFound = (res: HttpResponse, key: string) =>
    sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file ${key}` })

  async function serve(res: HttpResponse, ask: Ask, flow: Flow, options: ServeOptions): Promise<void> {
    const { key } = ask
    if (misses.has(key)) {
      counters.negativeHits++
      return void res.cork(() => notFound(res, key))
    }
    const inMemory = hot.get(key)
    if (inMemory !== undefined) {
      counters.memoryHits++
      hit(key)
      return answerObject(res, ask, flow, inMemory.meta, options, fromMemory(inMemory.body))
    }
    let cached = await openCached(dir, key)
    if (cached === null) counters.misses++
    else counters.diskHits++
    for (let attempt = 0; cached === null && attempt < 2; attempt++) {
      const result = await fill(key)
      if (result === 'missing') {
        if (!flow.aborted) res.cork(() => notFound(res, key))
        return
      }
      // Larger than the whole cache, or no room on its disk: straight from the store, never kept.
      if (result === 'too-big' || result === 'no-space') {
        counters.direct++
        return serveDirect(res, ask, flow, options)
      }
      // Evicted between the fill and this open (a cache far smaller than its traffic): ask once more.
      cached = await openCached(dir, key)
    }
    if (cached === null) throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'disk cache', problem: `${key} could not be kept`, key })
    hit(key)
    const { fh, meta, offset } = cached
    if (flow.aborted) return void (await fh.close())
    const loaded = await hot.load(cached).catch(() => null)
    if (loaded !== null) {
      void fh.close()
      if (flow.aborted) return
      return answerObject(res, ask, flow, meta, options, fromMemory(loaded.body))
    }
    // Read through the handle, not a stream that owns it: a multipart answer reads several ranges; closed once, at the end.
    try {
      await answerObject(res, ask, flow, meta, options, (start, end) => Readable.from(readSpan(fh, offset + start, offset + end)))
    } finally {
      void fh.close()
    }
  }

  /**
   * An object larger than the whole cache: streamed from the store, never
   * cached. One HEAD decides 304/416/the range, then one GET of just the
   * bytes to send; an object replaced between the two is refused (503), not
   * mixed.
   */
  async function serveDirect(res: HttpResponse, ask: Ask, flow: Flow, options: ServeOptions): Promise<void> {
    direct ??= createBlobStore(blobStoreConfig(config))
    const store = await direct
    const info = await store.head(ask.key)
    if (flow.aborted) return
    if (info === null) return void res.cork(() => notFound(res, ask.key))
    const meta: CachedMeta = { ...info, lastModified: info.lastModified.getTime() }
    const open = async (start: number, end: number): Promise<Readable> => {
      const whole = start === 0 && end === meta.size - 1
      const obj = await store.get(ask.key, whole ? {} : { range: { start, end } })
      if (obj === null || obj.etag !== meta.etag) {
        obj?.body.destroy()
        throw createError('ESPRA_ERR_STORAGE_UNAVAILABLE', { store: 'blob store', problem: `${ask.key} changed while being read; try again`, key: ask.key })
      }
      return obj.body
    }
    await answerObject(res, ask, flow, meta, options, open)
  }

  return {
    serve,
    async close() {
      if (direct) await (await direct).close()
    },
    destroy() {
      if (direct) void direct.then((s) => s.close())
    },
  }
}
