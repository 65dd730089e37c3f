/**
 * A fileserver child serving blob-store objects: `GET|HEAD /f/<key>`, from
 * the node's disk cache (disk-cache.ts; the parent fills it, one fetch per
 * key however many requests miss at once).
 *
 * - Objects stored compressed (`contentEncoding` gzip, br or deflate) are sent
 *   as stored, with `Content-Encoding`, to clients that accept the encoding,
 *   and decompressed on the fly (chunked, no Range) for the others; both with
 *   `Vary: Accept-Encoding` and each with its own strong ETag.
 * - Only uploaded files: `/f/files/<sha256>`. Every other key of the store
 *   (build manifests and blobs, tus parts) answers 404 without a lookup. An
 *   uploaded file is sent so that it can never run as a page of the app's
 *   origin (upload-headers.ts: nosniff, a sandbox CSP, `attachment` for
 *   active types); with `--files-host` it is served on that Host only.
 * - `Range` (http-conditions.ts): one range answers 206 with `Content-Range`,
 *   several `multipart/byteranges` (at most 16 after merging; more get the
 *   whole object, 200), 416 with `Content-Range: bytes *\/size` when
 *   unsatisfiable; `If-Range` is honoured.
 * - `If-None-Match` (weak comparison, lists, `*`), else `If-Modified-Since`
 *   (a valid HTTP-date, not in the future), answers 304.
 *   `Cache-Control: public, max-age=2678400` (31 days).
 * - Objects up to 2 MB, once read from the disk cache, are kept whole in the
 *   child's memory (HotCache, 64 MB per child but at most a quarter of
 *   `--cache-max-bytes`, least recently served dropped first, forgotten on
 *   `files.changed` like the negative cache): a hit then
 *   costs no file open, read or per-request buffer.
 * - The key is the rest of the path, percent-decoded once, and must be a
 *   valid storage key (blob-key.ts): `..`, `.` and empty segments, a leading
 *   `/`, NUL and other control characters, `\`, `%` (so double encoding) are
 *   all 400 before anything is looked up. Cache files are named by the key's
 *   hash, so no path from a request ever reaches the file system.
 *
 * The serving path (`createFileServing`) is shared with vhost files
 * (vhost-files.ts), which pass their own Cache-Control and content-hash ETags.
 *
 * uWS: the handler reads every header synchronously, then awaits; the
 * server wrapper has attached onAborted before the handler runs, and every
 * write after an await happens inside `res.cork`. Bodies of known length
 * stream with `tryEnd` + `onWritable`; decompressed ones with `write`.
 */
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { EspraError } from '../../lib/core/errors.js'
import { sendJson, statusLine } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { checkKey } from '../../lib/storage/blob-key.js'
import { blobStoreConfig, createBlobStore, type BlobStore } from '../../lib/storage/blob-store.js'
import { parseFilesChangedPush } from '../../lib/transport/files-changed.js'
import { requestHost } from '../../lib/vhosts/vhost.js'
import type { FileCounters } from './counters.js'
import { cacheName, createHotCache, openCached, type CachedMeta, type FillResult } from './disk-cache.js'
import { ifRangeMatches, multipartLayout, noneMatch, notModifiedSince, parseRanges, type Multipart } from './http-conditions.js'
import { readUploadMetadata, UPLOAD_CSP, uploadDisposition } from './upload-headers.js'

export const FILES_PATH = '/f'
export const FILES_CACHE_CONTROL = 'public, max-age=2678400'
/** A fill may download a large object before it answers. */
const FILL_TIMEOUT_MS = 300_000
/** A child reports a hit on one key to the parent (for LRU) at most this often. */
const HIT_REPORT_MS = 5000
const NEGATIVE_MAX = 100_000
/** Per child: small objects are served from memory once read from the disk cache (HotCache; bench/files.ts shows why). */
const HOT_MAX_BYTES = 64 * 1024 ** 2
const HOT_MAX_OBJECT_BYTES = 2 * 1024 ** 2

/** The bytes of a `multipart/byteranges` answer: each part's head and its bytes (the first part's stream already open), then the end. */
async function* multipartStream(layout: Multipart, first: Readable, open: (start: number, end: number) => Readable | Promise<Readable>): AsyncGenerator<Buffer> {
  for (const [i, part] of layout.parts.entries()) {
    yield part.head
    const stream = i === 0 ? first : await open(part.span.start, part.span.end)
    try {
      for await (const chunk of stream) yield chunk as Buffer
    } finally {
      stream.destroy()
    }
  }
  yield layout.tail
}

const READ_CHUNK = 64 * 1024

/** Bytes `start`..`end` (inclusive) of an open file, in chunks of at most 64 KB. */
async function* readSpan(fh: FileHandle, start: number, end: number): AsyncGenerator<Buffer> {
  for (let at = start; at <= end;) {
    const n = Math.min(READ_CHUNK, end - at + 1)
    const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(n), 0, n, at)
    if (bytesRead === 0) throw new EspraError('ESPRA_ERR_STORAGE_UNAVAILABLE', 'a disk cache file ended early')
    yield buffer.subarray(0, bytesRead)
    at += bytesRead
  }
}

/** A body in memory as the stream `respond` takes: one chunk, no copy. */
const fromMemory = (body: Buffer) => (start: number, end: number): Readable => Readable.from([body.subarray(start, end + 1)])

/** Child → parent request and message of the disk cache. */
export type CacheToParent = { t: 'cache-fill'; key: string } | { t: 'cache-hit'; name: string }

/** The keys `/f/` serves: uploaded files (upload-store.ts), nothing else of the blob store. */
export const UPLOAD_KEY = /^files\/[0-9a-f]{64}$/

/** The storage key a `/f/...` URL names, or null when it is malformed or tries to leave the store. */
export function resolveFileKey(url: string): string | null {
  const rest = url.slice(FILES_PATH.length + 1)
  let key: string
  try {
    key = decodeURIComponent(rest)
    checkKey(key)
  } catch {
    return null
  }
  return key
}

const ENCODINGS = new Set(['gzip', 'br', 'deflate'])

/** Whether `Accept-Encoding` allows `encoding` (q > 0, named or through `*`). */
export function accepts(acceptEncoding: string, encoding: string): boolean {
  let star = 0
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [name, ...params] = part.trim().split(';')
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean)
    const weight = q ? Number(q[1]) : 1
    if (name === encoding || (encoding === 'gzip' && name === 'x-gzip')) return weight > 0
    if (name === '*') star = weight
  }
  return star > 0
}

/** Everything a file answer needs from the request, read before the first await (uWS drops the request after it). */
export interface Ask {
  readonly method: 'get' | 'head'
  readonly key: string
  readonly acceptEncoding: string
  readonly ifNoneMatch: string
  readonly ifModifiedSince: string
  readonly range: string
  readonly ifRange: string
}

/** Whether the client went away, and what to stop then. */
export interface Flow {
  aborted: boolean
  cleanup: (() => void) | null
}

const httpDate = (ms: number) => new Date(ms).toUTCString()

/** Streams `stream` (exactly `total` bytes) with tryEnd + onWritable; resolves when done or aborted. */
function streamKnown(res: HttpResponse, flow: Flow, stream: Readable, total: number): Promise<void> {
  return new Promise((resolve) => {
    flow.cleanup = () => {
      stream.destroy()
      resolve()
    }
    stream.on('data', (chunk: Buffer) => {
      if (flow.aborted) return
      const lastOffset = res.getWriteOffset()
      let ok = false
      let done = false
      res.cork(() => ([ok, done] = res.tryEnd(chunk, total)))
      if (done) {
        stream.destroy()
        return resolve()
      }
      if (!ok) {
        stream.pause()
        res.onWritable((offset) => {
          const [ok2, done2] = res.tryEnd(chunk.subarray(offset - lastOffset), total)
          if (done2) {
            stream.destroy()
            resolve()
          } else if (ok2) stream.resume()
          return ok2
        })
      }
    })
    stream.on('error', () => {
      // Headers are out: the only honest signal left is cutting the connection.
      if (!flow.aborted) res.close()
      resolve()
    })
    stream.on('close', () => resolve())
  })
}

/** Streams `stream` of unknown length (decompressed) with write + end. */
function streamUnknown(res: HttpResponse, flow: Flow, stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    flow.cleanup = () => {
      stream.destroy()
      resolve()
    }
    stream.on('data', (chunk: Buffer) => {
      if (flow.aborted) return
      let ok = true
      res.cork(() => (ok = res.write(chunk)))
      if (!ok) {
        stream.pause()
        res.onWritable(() => {
          stream.resume()
          return true
        })
      }
    })
    stream.on('end', () => {
      if (!flow.aborted) res.cork(() => res.end())
      resolve()
    })
    stream.on('error', () => {
      if (!flow.aborted) res.close()
      resolve()
    })
  })
}

function decoder(encoding: string) {
  return encoding === 'gzip' ? createGunzip() : encoding === 'br' ? createBrotliDecompress() : createInflate()
}

/** How an answer differs by route: `/f/` objects are immutable by key, vhost files are not. */
export interface ServeOptions {
  readonly cacheControl: string
  /** Strong ETags of the object as stored and of its decompressed form (default: from the store's ETag). */
  readonly etags?: (meta: CachedMeta) => { stored: string; decoded: string }
  /** Last-Modified is at least this (ms): a vhost mapping pointed at an older file must not look unmodified. */
  readonly notBefore?: number
  /** An uploaded file under `/f/`: sent with the headers that keep it passive (upload-headers.ts). */
  readonly upload?: boolean
}

const FILES_OPTIONS: ServeOptions = { cacheControl: FILES_CACHE_CONTROL, upload: true }

/** Answers a GET or HEAD with the blob-store object `ask.key`, through the node's disk cache. */
export interface FileServing extends Handle {
  serve(res: HttpResponse, ask: Ask, flow: Flow, options?: ServeOptions): Promise<void>
}

/** Reads the request headers a file answer uses; call it before any await. */
export function readAsk(req: HttpRequest, method: 'get' | 'head', key: string): Ask {
  return {
    method, key,
    acceptEncoding: req.getHeader('accept-encoding'),
    ifNoneMatch: req.getHeader('if-none-match'),
    ifModifiedSince: req.getHeader('if-modified-since'),
    range: req.getHeader('range'),
    ifRange: req.getHeader('if-range'),
  }
}

/** Attaches the abort handler (synchronously, before any await) and returns the flow it updates. */
export function watchAbort(res: HttpResponse): Flow {
  const flow: Flow = { aborted: false, cleanup: null }
  res.onAborted(() => {
    flow.aborted = true
    flow.cleanup?.()
  })
  return flow
}

/** The `405` answer of file routes. */
export function methodNotAllowed(res: HttpResponse, method: string, what: string): void {
  res.writeStatus(statusLine(405)).writeHeader('Allow', 'GET, HEAD').writeHeader('Content-Type', 'application/json')
    .end(JSON.stringify({ code: 'ESPRA_ERR_HTTP_METHOD', message: `${method.toUpperCase()} is not allowed on ${what}` }))
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
  const negative = new Map<string, true>()
  const fills = new Map<string, Promise<FillResult>>()
  const reported = new Map<string, number>()
  let direct: Promise<BlobStore> | null = null

  /** Keys named by files.changed while this child's fill for them was in flight: a 'missing' answer may predate it. */
  const changedDuringFill = new Set<string>()
  // Never more than a quarter of the disk cache: memory stays a small layer over it, not a second cache.
  const hot = createHotCache({ maxBytes: Math.min(HOT_MAX_BYTES, Math.floor(config.cacheMaxBytes / 4)), maxObjectBytes: HOT_MAX_OBJECT_BYTES })
  counters.register(ctx.metrics, hot.stats)
  function forget(keys: readonly string[], all: boolean): void {
    hot.forget(keys, all)
    if (all) {
      negative.clear()
      for (const key of fills.keys()) changedDuringFill.add(key)
    }
    for (const key of keys) {
      negative.delete(key)
      if (fills.has(key)) changedDuringFill.add(key)
    }
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
  function fill(key: string): Promise<FillResult> {
    let p = fills.get(key)
    if (p === undefined) {
      p = ctx.parent.request<FillResult>({ t: 'cache-fill', key } satisfies CacheToParent, FILL_TIMEOUT_MS).then((result) => {
        // Remember a miss only if no files.changed for the key came in meanwhile.
        if (result === 'missing' && !changedDuringFill.has(key)) {
          negative.set(key, true)
          if (negative.size > NEGATIVE_MAX) negative.delete(negative.keys().next().value!)
        }
        return result
      }).finally(() => {
        fills.delete(key)
        changedDuringFill.delete(key)
      })
      fills.set(key, p)
    }
    return p
  }

  function hit(key: string): void {
    const now = Date.now()
    if (now - (reported.get(key) ?? 0) < HIT_REPORT_MS) return
    if (reported.size > NEGATIVE_MAX) reported.clear()
    reported.set(key, now)
    ctx.parent.send({ t: 'cache-hit', name: cacheName(key) } satisfies CacheToParent)
  }

  const notFound = (res: HttpResponse, key: string) =>
    sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file ${key}` })

  async function serve(res: HttpResponse, ask: Ask, flow: Flow, options: ServeOptions = FILES_OPTIONS): Promise<void> {
    const { key } = ask
    if (negative.has(key)) {
      counters.negativeHits++
      return void res.cork(() => notFound(res, key))
    }
    const inMemory = hot.get(key)
    if (inMemory !== undefined) {
      counters.memoryHits++
      hit(key)
      return respond(res, ask, flow, inMemory.meta, options, fromMemory(inMemory.body), () => {})
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
    if (cached === null) throw new EspraError('ESPRA_ERR_STORAGE_UNAVAILABLE', `${key} could not be kept in the disk cache`)
    hit(key)
    const { fh, meta, offset } = cached
    if (flow.aborted) return void (await fh.close())
    const loaded = await hot.load(cached).catch(() => null)
    if (loaded !== null) {
      void fh.close()
      if (flow.aborted) return
      return respond(res, ask, flow, meta, options, fromMemory(loaded.body), () => {})
    }
    // Read through the handle, not a stream that owns it: a multipart answer reads several ranges; respond releases it once.
    await respond(res, ask, flow, meta, options, (start, end) => Readable.from(readSpan(fh, offset + start, offset + end)), () => void fh.close())
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
        throw new EspraError('ESPRA_ERR_STORAGE_UNAVAILABLE', `${ask.key} changed while being read; try again`)
      }
      return obj.body
    }
    await respond(res, ask, flow, meta, options, open, () => {})
  }

  /** Answers from `body` (a stream of any inclusive span of the object); `release` is called once, when nothing more is read. */
  async function respond(
    res: HttpResponse, ask: Ask, flow: Flow, meta: CachedMeta, options: ServeOptions,
    body: (start: number, end: number) => Readable | Promise<Readable>, release: () => void,
  ): Promise<void> {
    try {
      await answer(res, ask, flow, meta, options, body)
    } finally {
      release()
    }
  }

  async function answer(
    res: HttpResponse, ask: Ask, flow: Flow, meta: CachedMeta, options: ServeOptions,
    body: (start: number, end: number) => Readable | Promise<Readable>,
  ): Promise<void> {
    const encoding = meta.contentEncoding?.toLowerCase() ?? null
    const encoded = encoding !== null && encoding !== 'identity'
    const decompress = encoded && ENCODINGS.has(encoding) && !accepts(ask.acceptEncoding, encoding)
    const tag = `"${meta.etag || `${meta.size.toString(16)}-${meta.lastModified.toString(16)}`}`
    const tags = options.etags?.(meta) ?? { stored: `${tag}"`, decoded: `${tag}-d"` }
    const etag = decompress ? tags.decoded : tags.stored
    const lastModified = Math.max(meta.lastModified, options.notBefore ?? 0)
    const upload = options.upload === true ? readUploadMetadata(meta.metadata) : null
    const headers = (status: number) => {
      res.writeStatus(statusLine(status)).writeHeader('ETag', etag).writeHeader('Last-Modified', httpDate(lastModified))
        .writeHeader('Cache-Control', options.cacheControl).writeHeader('X-Content-Type-Options', 'nosniff')
      if (upload !== null) res.writeHeader('Content-Security-Policy', UPLOAD_CSP)
      if (encoded) res.writeHeader('Vary', 'Accept-Encoding')
      if (!decompress) res.writeHeader('Accept-Ranges', 'bytes')
    }
    const notModified = ask.ifNoneMatch !== ''
      ? noneMatch(ask.ifNoneMatch, [tags.stored, tags.decoded])
      : notModifiedSince(ask.ifModifiedSince, lastModified)
    if (notModified) {
      return void res.cork(() => {
        headers(304)
        res.endWithoutBody()
      })
    }
    const ranges = ask.range === '' || decompress || !ifRangeMatches(ask.ifRange, etag, lastModified) ? 'ignore' : parseRanges(ask.range, meta.size)
    if (ranges === 'unsatisfiable') {
      return void res.cork(() => {
        headers(416)
        res.writeHeader('Content-Range', `bytes */${meta.size}`).writeHeader('Content-Type', 'application/json')
          .end(JSON.stringify({ code: 'ESPRA_ERR_STORAGE_RANGE', message: `range not satisfiable (object is ${meta.size} bytes)` }))
      })
    }
    const spans = ranges === 'ignore' ? [{ start: 0, end: meta.size - 1 }] : ranges
    const multipart = spans.length > 1 ? multipartLayout(spans, meta.size, meta.contentType) : null
    const span = spans[0]!
    const length = multipart?.length ?? span.end - span.start + 1
    const sending = ask.method === 'get' && length > 0
    // The body is opened before the status goes out: a store that fails now still gets an error answer.
    let stream: Readable | null = null
    if (sending) {
      const first = await body(decompress ? 0 : span.start, decompress ? meta.size - 1 : span.end)
      if (flow.aborted) return void first.destroy()
      stream = multipart === null ? first : Readable.from(multipartStream(multipart, first, body))
    }
    res.cork(() => {
      headers(ranges === 'ignore' ? 200 : 206)
      res.writeHeader('Content-Type', multipart?.contentType ?? meta.contentType)
      if (upload !== null) res.writeHeader('Content-Disposition', uploadDisposition(meta.contentType, upload.inline, upload.filename))
      if (encoded && !decompress) res.writeHeader('Content-Encoding', encoding)
      if (ranges !== 'ignore' && multipart === null) res.writeHeader('Content-Range', `bytes ${span.start}-${span.end}/${meta.size}`)
      if (ask.method === 'head') {
        if (decompress) res.endWithoutBody()
        else res.endWithoutBody(length)
      } else if (length === 0) res.end()
    })
    if (stream === null) return
    if (!decompress) return streamKnown(res, flow, stream, length)
    const source = stream
    const plain = decoder(encoding)
    source.on('error', (err) => plain.destroy(err))
    plain.on('close', () => source.destroy())
    source.pipe(plain)
    return streamUnknown(res, flow, plain)
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

/** Adds `GET|HEAD /f/*` to the child's app, served by `files`: uploaded files only, on `--files-host` when set. */
export function startS3Files(ctx: ChildContext, files: FileServing): void {
  const filesHost = ctx.config.filesHost
  ctx.app.any(`${FILES_PATH}/*`, (res: HttpResponse, req: HttpRequest): Promise<void> | void => {
    if (filesHost !== null && requestHost(req.getHeader('host')) !== filesHost) {
      return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `uploaded files are served on ${filesHost} only` })
    }
    const method = req.getMethod().toLowerCase()
    if (method !== 'get' && method !== 'head') return methodNotAllowed(res, method, 'files')
    const key = resolveFileKey(req.getUrl())
    if (key === null) return sendJson(res, 400, { code: 'ESPRA_ERR_HTTP_BAD_PATH', message: 'malformed file path, or one that leaves the file store' })
    // Build manifests and blobs, tus parts and anything else in the store are not files: nothing is looked up.
    if (!UPLOAD_KEY.test(key)) return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file ${key} (only uploaded files, files/<sha256>, are served here)` })
    // Everything from the request is read now: after the first await the request object is gone.
    const ask = readAsk(req, method, key)
    return files.serve(res, ask, watchAbort(res))
  })
}
