/**
 * The answer to a GET or HEAD of one stored object, however the child got
 * its bytes (memory, a disk cache file, the blob store): `/f/` files
 * (files-route.ts) and vhost files (vhost-files.ts) both answer through it.
 *
 * - Objects stored compressed (`contentEncoding` gzip, br or deflate) are sent
 *   as stored, with `Content-Encoding`, to clients that accept the encoding,
 *   and decompressed on the fly (chunked, no Range) for the others; both with
 *   `Vary: Accept-Encoding` and each with its own strong ETag.
 * - `Range` (lib/http/conditions.ts): one range answers 206 with
 *   `Content-Range`, several `multipart/byteranges` (at most 16 after
 *   merging; more get the whole object, 200), 416 with
 *   `Content-Range: bytes *\/size` when unsatisfiable; `If-Range` is honoured.
 * - `If-None-Match` (weak comparison, lists, `*`), else `If-Modified-Since`
 *   (a valid HTTP-date, not in the future), answers 304.
 * - An uploaded file is sent so that it can never run as a page of the app's
 *   origin (upload-headers.ts: nosniff, a sandbox CSP, `attachment` for
 *   active types).
 *
 * uWS: everything from the request is read before the first await
 * (`readAsk`); every write after an await happens inside `res.cork`.
 */
import { Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { accepts, ifRangeMatches, multipartLayout, noneMatch, notModifiedSince, parseRanges, type Multipart } from '../../lib/http/conditions.js'
import { statusLine } from '../../lib/http/server.js'
import { streamBody, type Flow } from '../../lib/http/stream-body.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { unsatisfiable } from '../../lib/storage/blob-key.js'
import type { CachedMeta } from './cache-file.js'
import { readUploadMetadata, UPLOAD_CSP, uploadDisposition } from './upload-headers.js'

const ENCODINGS = new Set(['gzip', 'br', 'deflate'])

const httpDate = (ms: number) => new Date(ms).toUTCString()

/** Opens a stream of bytes `start`..`end` (inclusive) of the object. */
export type OpenSpan = (start: number, end: number) => Readable | Promise<Readable>

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

/** The `405` answer of file routes. */
export function methodNotAllowed(res: HttpResponse, method: string, what: string): void {
  res.writeStatus(statusLine(405)).writeHeader('Allow', 'GET, HEAD').writeHeader('Content-Type', 'application/json')
    .end(JSON.stringify({ code: 'ESPRA_ERR_HTTP_METHOD', message: `${method.toUpperCase()} is not allowed on ${what}` }))
}

/** The bytes of a `multipart/byteranges` answer: each part's head and its bytes (the first part's stream already open), then the end. */
async function* multipartStream(layout: Multipart, first: Readable, open: OpenSpan): AsyncGenerator<Buffer> {
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

function decoder(encoding: string) {
  return encoding === 'gzip' ? createGunzip() : encoding === 'br' ? createBrotliDecompress() : createInflate()
}

/** Answers `ask` for the object `meta` describes; `body` opens the spans it sends. */
export async function answerObject(
  res: HttpResponse, ask: Ask, flow: Flow, meta: CachedMeta, options: ServeOptions, body: OpenSpan,
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
        .end(JSON.stringify(unsatisfiable('the object', meta.size).toWire()))
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
  if (!decompress) return streamBody(res, flow, stream, length)
  const source = stream
  const plain = decoder(encoding)
  source.on('error', (err) => plain.destroy(err))
  plain.on('close', () => source.destroy())
  source.pipe(plain)
  return streamBody(res, flow, plain, null)
}
