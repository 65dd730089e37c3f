/**
 * `POST /upload` in a fileserver child: token-checked uploads. The token (an
 * `Authorization: Bearer` header or a `token` query parameter) is verified,
 * then consumed in the datastore (single use); the body, raw (its
 * `Content-Type` is the type, `X-Filename` optional) or a `multipart/form-data`
 * form with one file field, streams to `<data-dir>/uploads-tmp/` while sha256
 * and whirlpool are computed in the same pass; progress goes to the token's
 * Live channel (at most 4 events a second, a final one at the end); then the
 * file is stored (upload-store.ts) and the client gets its record as JSON.
 * A blob store or seed out of reach keeps the file pending (202) for the
 * parent's retry job.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import busboy from 'busboy'
import { EspraError } from '../../lib/core/errors.js'
import { sendJson } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { createLivePublisher, type LivePublisher } from '../../lib/live/publisher.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { deriveUploadKey, typeAllowed, verifyUploadToken, type UploadClaims } from '../../lib/uploads/token.js'
import type { UploadSeedRequest } from './upload-pending.js'
import { announceStored, blobKeyOfUpload, isTransient, keepPending, storeFile, uploadDirs, urlOfUpload, type FileRecord } from './upload-store.js'

/** Child → parent: a file was left pending; run the retry job now. */
export type UploadToParent = { t: 'upload-pending' }

const PROGRESS_INTERVAL_MS = 250
/** Room for multipart boundaries and part headers beyond the file itself. */
const MULTIPART_SLACK = 64 * 1024
const BODY_BUFFER = 256 * 1024
const SEED_TIMEOUT_MS = 10_000

/** Throws `ESPRA_ERR_UPLOAD_NO_WHIRLPOOL` when this process cannot hash whirlpool (no legacy provider). */
export function checkWhirlpool(): void {
  try {
    createHash('whirlpool')
  } catch (err) {
    throw new EspraError('ESPRA_ERR_UPLOAD_NO_WHIRLPOOL', `whirlpool is unavailable: start node with --openssl-legacy-provider (${(err as Error).message})`)
  }
}

/**
 * Progress reports at most one per `intervalMs` (the first at once): `report`
 * drops calls that come sooner. The final event is sent separately, always.
 */
export function createProgressThrottle(intervalMs: number, send: (bytes: number) => void, now: () => number = Date.now): (bytes: number) => void {
  let last = -Infinity
  return (bytes) => {
    const t = now()
    if (t - last < intervalMs) return
    last = t
    send(bytes)
  }
}

/** Hashes (sha256 and whirlpool), counts and bounds the file bytes on their way to disk; reports progress. */
class Digest extends Transform {
  readonly sha256: Hash = createHash('sha256')
  readonly whirlpool: Hash = createHash('whirlpool')
  size = 0
  constructor(private readonly maxSize: number, private readonly progress: (bytes: number) => void) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length
    if (this.size > this.maxSize) return done(new EspraError('ESPRA_ERR_UPLOAD_TOO_LARGE', `the file is larger than the ${this.maxSize} bytes its token allows`))
    this.sha256.update(chunk)
    this.whirlpool.update(chunk)
    this.progress(this.size)
    done(null, chunk)
  }
}

interface Received {
  readonly size: number
  readonly sha256: string
  readonly whirlpool: string
  readonly type: string
  readonly filename: string | null
}

function diskError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOSPC' || code === 'EDQUOT') return new EspraError('ESPRA_ERR_UPLOAD_DISK_FULL', 'no disk space left for the upload')
  return err
}

function cleanName(raw: string | undefined): string | null {
  if (!raw) return null
  let name = raw
  try {
    name = decodeURIComponent(raw)
  } catch {
    // Taken as sent.
  }
  name = name.replace(/[\x00-\x1f\x7f/\\]/g, '_').slice(0, 255)
  return name === '' ? null : name
}

/** Streams the file of a raw or multipart body through `digest` into `path`. */
async function receive(body: Readable, contentType: string, filename: string | null, claims: UploadClaims, path: string, digest: Digest): Promise<Received> {
  const write = async (source: Readable, type: string, name: string | null): Promise<Received> => {
    await pipeline(source, digest, createWriteStream(path, { flags: 'wx' })).catch((err: unknown) => {
      throw diskError(err)
    })
    return { size: digest.size, sha256: digest.sha256.digest('hex'), whirlpool: digest.whirlpool.digest('hex'), type, filename: name }
  }
  if (!/^multipart\/form-data/i.test(contentType)) return write(body, contentType.trim() || 'application/octet-stream', filename)

  let parser: busboy.Busboy
  try {
    parser = busboy({ headers: { 'content-type': contentType }, limits: { files: 1, fields: 50, parts: 60, fieldSize: 64 * 1024 } })
  } catch (err) {
    throw new EspraError('ESPRA_ERR_UPLOAD_BAD_BODY', `multipart: ${(err as Error).message}`)
  }
  return new Promise<Received>((resolve, reject) => {
    let file: Promise<Received> | null = null
    parser.on('file', (_field, stream, info) => {
      if (file !== null) return void stream.resume()
      const type = info.mimeType || 'application/octet-stream'
      if (!typeAllowed(claims, type)) {
        stream.resume()
        file = Promise.reject(new EspraError('ESPRA_ERR_UPLOAD_TYPE', `type ${type} is not allowed (allowed: ${claims.types.join(', ')})`))
        file.catch(reject)
        return
      }
      file = write(stream, type, cleanName(info.filename) ?? filename)
      file.catch(reject)
    })
    parser.on('error', (err: Error) => reject(new EspraError('ESPRA_ERR_UPLOAD_BAD_BODY', `multipart: ${err.message}`)))
    parser.on('close', () => {
      if (file === null) reject(new EspraError('ESPRA_ERR_UPLOAD_BAD_BODY', 'the form holds no file field'))
      else file.then(resolve, reject)
    })
    body.pipe(parser)
  })
}

/** Adds `POST /upload` to the child's app. */
export async function startUploads(ctx: ChildContext): Promise<Handle> {
  const { config, log } = ctx
  checkWhirlpool()
  const key = deriveUploadKey(config.secret)
  const blobs = await createBlobStore(blobStoreConfig(config))
  const dirs = uploadDirs(config)
  await mkdir(dirs.tmp, { recursive: true })
  // Datastore ops (token consume, file records) and files.changed go over the node's seed link, relayed by the parent.
  const seed = {
    request: <R>(op: string, body: unknown, timeoutMs = SEED_TIMEOUT_MS): Promise<R> =>
      ctx.parent.request<R>({ t: 'upload-seed', op, body, timeoutMs } satisfies UploadSeedRequest, timeoutMs + 1000),
  }
  const datastore = createDatastoreClient(seed)
  let publisher: LivePublisher | null = null
  const livePublisher = (): LivePublisher => {
    if (publisher === null) {
      publisher = createLivePublisher({ secret: config.secret, id: `${config.nodeId.slice(0, 40)}/upload-${process.pid}`, log, linkOffset: config.liveLinkOffset, maxFrame: config.maxFrame })
      const routing = ctx.state().routing
      if (routing) publisher.setRouting(routing)
    }
    return publisher
  }
  ctx.onPush((push) => {
    if (push.op === 'routing' && publisher) {
      const routing = ctx.state().routing
      if (routing) publisher.setRouting(routing)
    }
  })
  const publish = (channel: string | undefined, data: Record<string, unknown>): void => {
    if (channel === undefined) return
    livePublisher().publish(channel, data).catch((err: unknown) => log.debug({ err, channel }, 'upload progress not published'))
  }

  async function handle(res: HttpResponse, req: HttpRequest): Promise<void> {
    const auth = req.getHeader('authorization')
    const token = /^bearer /i.test(auth) ? auth.slice(7).trim() : (req.getQuery('token') ?? '')
    const contentType = req.getHeader('content-type')
    const lengthHeader = req.getHeader('content-length')
    const filename = cleanName(req.getHeader('x-filename'))
    if (token === '') throw new EspraError('ESPRA_ERR_UPLOAD_TOKEN_INVALID', 'no upload token (Authorization: Bearer <token> or ?token=)')
    const verified = verifyUploadToken(key, token)
    if (!verified.ok) throw new EspraError('ESPRA_ERR_UPLOAD_TOKEN_INVALID', `upload token ${verified.reason}`)
    const claims = verified.claims
    const multipart = /^multipart\/form-data/i.test(contentType)
    const declared = lengthHeader === '' ? null : Number(lengthHeader)
    if (declared !== null && declared > claims.maxSize + (multipart ? MULTIPART_SLACK : 0)) {
      throw new EspraError('ESPRA_ERR_UPLOAD_TOO_LARGE', `the body is ${declared} bytes; the token allows ${claims.maxSize}`)
    }
    if (!multipart && !typeAllowed(claims, contentType || 'application/octet-stream')) {
      throw new EspraError('ESPRA_ERR_UPLOAD_TYPE', `type ${contentType || '(none)'} is not allowed (allowed: ${claims.types.join(', ')})`)
    }

    // uWS hands the body only to an onData attached now: buffer it (bounded, the socket paused) while the token is consumed.
    let ended = false
    const body = new PassThrough({ highWaterMark: BODY_BUFFER })
    body.on('error', () => {})
    res.onData((chunk, isLast) => {
      if (ended || body.destroyed) return
      const more = body.write(Buffer.from(chunk.slice(0)))
      if (isLast) body.end()
      else if (!more) {
        res.pause()
        body.once('drain', () => ended || res.resume())
      }
    })
    let aborted = false
    res.onAborted(() => {
      aborted = true
      body.destroy(new EspraError('ESPRA_ERR_UPLOAD_BAD_BODY', 'the client went away'))
    })
    const path = join(dirs.tmp, randomBytes(12).toString('hex'))
    const answer = (status: number, value: unknown): void => {
      ended = true
      if (!aborted) res.cork(() => sendJson(res, status, value))
    }
    try {
      let record: Record<string, unknown> | null
      try {
        record = await datastore.consume('uploadTokens', claims.id)
      } catch (err) {
        throw new EspraError('ESPRA_ERR_UPLOAD_UNAVAILABLE', `cannot check the upload token: ${(err as Error).message}`)
      }
      if (record === null) throw new EspraError('ESPRA_ERR_UPLOAD_TOKEN_USED', 'this upload token was used already (or never minted)')

      const digest = new Digest(claims.maxSize, claims.channel === undefined ? () => {} : createProgressThrottle(PROGRESS_INTERVAL_MS, (bytes) => {
        publish(claims.channel, { t: 'upload.progress', bytes, total: multipart ? null : declared })
      }))
      const got = await receive(body, contentType, filename, claims, path, digest)
      const file: Omit<FileRecord, 'encoding' | 'storedAt'> = {
        key: blobKeyOfUpload(got.sha256), size: got.size, sha256: got.sha256, whirlpool: got.whirlpool, type: got.type,
        filename: got.filename, owner: claims.owner ?? null,
      }
      let stored: { record: FileRecord; fresh: boolean } | null = null
      try {
        stored = await storeFile(blobs, datastore, path, file)
      } catch (err) {
        if (!isTransient(err)) throw err
        log.warn({ err, sha256: file.sha256 }, 'upload kept pending: the store is out of reach')
        await keepPending(config, path, file)
        ctx.parent.send({ t: 'upload-pending' } satisfies UploadToParent)
      }
      await unlink(path).catch(() => {})
      // Fileservers may have looked the key up (and missed) before: they drop their negative caches.
      if (stored?.fresh) announceStored(seed, stored.record.key, (err) => log.warn({ err, key: file.key }, 'fileservers not told about a stored upload'))
      const result = stored === null
        ? { ...file, url: urlOfUpload(file.sha256), pending: true }
        : { ...stored.record, url: urlOfUpload(stored.record.sha256), pending: false, deduplicated: !stored.fresh }
      publish(claims.channel, { t: 'upload.done', bytes: got.size, key: result.key, sha256: result.sha256, url: result.url, pending: result.pending })
      answer(stored === null ? 202 : 200, result)
    } catch (err) {
      // Whatever is still coming is read and dropped, so the answer reaches the client; nothing partial stays on disk.
      ended = true
      body.unpipe()
      if (!body.destroyed) body.resume()
      if (!aborted) res.resume()
      await unlink(path).catch(() => {})
      throw err
    }
  }

  // The server wrapper answers what `handle` throws with its coded status (401, 403, 413, 415, 507, ...).
  ctx.app.post('/upload', (res, req) => handle(res, req))

  return {
    async close() {
      await publisher?.close()
      await blobs.close()
    },
    destroy() {
      void publisher?.close()
      void blobs.close()
    },
  }
}
