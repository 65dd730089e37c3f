/**
 * What every upload a fileserver child receives goes through, however its
 * bytes came (`POST /upload` in upload.ts, tus resumable uploads in tus.ts):
 * sha256 and whirlpool (on a thread) in one pass on the way to a local file ({@link Digest}),
 * progress events on the token's Live channel, then {@link UploadPipeline.finish}:
 * stored once by content (gzip when compressible, upload-store.ts), recorded
 * in the datastore, fileservers told (`files.changed`), `upload.done` on the
 * channel. A blob store or seed out of reach keeps the file pending (202) for
 * the parent's retry job (upload-pending.ts).
 *
 * Children keep no seed link of their own: datastore ops and `files.changed`
 * go to the parent over IPC, which relays them on the node's seed link.
 */
import { createHash, type Hash } from 'node:crypto'
import { mkdir, unlink } from 'node:fs/promises'
import { PassThrough, Transform, type TransformCallback } from 'node:stream'
import { createError } from '../../lib/core/errors.js'
import type { HttpResponse } from '../../lib/http/uws.js'
import { ThreadHash } from '../../lib/uploads/hash-thread.js'
import { createLivePublisher, type LivePublisher } from '../../lib/live/publisher.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore, type BlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { FileChangeLink } from '../../lib/transport/files-changed.js'
import type { UploadSeedRequest } from './upload-pending.js'
import type { FileCounters } from './counters.js'
import type { StreamedBlob } from './upload-stream.js'
import { commitWithToken, createUploadCommitter } from './upload-commit.js'
import { blobKeyOfUpload, fileRecord, isTransient, keepPending, storeBlob, storeFile, uploadDirs, urlOfUpload, type FileRecord, type UploadFile } from './upload-store.js'

/** Child → parent: a file was left pending; run the retry job now. */
export type UploadToParent = { t: 'upload-pending' }

export const PROGRESS_INTERVAL_MS = 250
const SEED_TIMEOUT_MS = 10_000
const BODY_BUFFER = 256 * 1024

/** Throws `ESPRA_ERR_UPLOAD_NO_WHIRLPOOL` when this process cannot hash whirlpool (no legacy provider). */
export function checkWhirlpool(): void {
  try {
    createHash('whirlpool')
  } catch (err) {
    throw createError('ESPRA_ERR_UPLOAD_NO_WHIRLPOOL', { reason: (err as Error).message })
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

/**
 * Hashes (sha256 and whirlpool), counts and bounds the file bytes on their
 * way to disk; reports progress. sha256 runs here; whirlpool, several times
 * slower, on the process's hash thread (lib/uploads/hash-thread.ts) at the
 * same time: each chunk is passed on at once, and the next is taken once the
 * thread is at most a few MB behind.
 */
export class Digest extends Transform {
  private readonly sha256: Hash = createHash('sha256')
  private readonly whirlpool = new ThreadHash('whirlpool')
  size = 0
  constructor(private readonly maxSize: number, private readonly progress: (bytes: number) => void) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length
    if (this.size > this.maxSize) return done(createError('ESPRA_ERR_UPLOAD_TOO_LARGE', { what: 'the file', size: `over ${this.maxSize}`, limit: 'the token', max: this.maxSize }))
    this.sha256.update(chunk)
    const ahead = this.whirlpool.update(chunk)
    this.progress(this.size)
    this.push(chunk)
    if (ahead) done()
    else this.whirlpool.drained().then(() => done(), done)
  }
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    if (err !== null) this.whirlpool.abandon()
    done(err)
  }
  /** Both digests (hex) of every byte that went through; call it once the stream has ended. */
  async hashes(): Promise<{ sha256: string; whirlpool: string }> {
    return { sha256: this.sha256.digest('hex'), whirlpool: await this.whirlpool.digest() }
  }
}

/** A whole file on local disk, hashed. */
export interface Received {
  readonly size: number
  readonly sha256: string
  readonly whirlpool: string
  readonly type: string
  readonly filename: string | null
  /** A gzip (level 9) of the bytes made while they arrived (compressible types; upload-gzip.ts): stored as it is, removed by `finish`. */
  readonly gzipPath?: string | null
  /** The object sent to the blob store while the bytes arrived (S3; upload-stream.ts), moved to its key by `finish`. */
  readonly streamed?: StreamedBlob | null
}

/** What the client is answered (and `upload.done` carries part of). */
export type UploadResult = Omit<FileRecord, 'encoding' | 'storedAt'> & Partial<Pick<FileRecord, 'encoding' | 'storedAt'>> & {
  readonly url: string
  readonly pending: boolean
  readonly deduplicated?: boolean
}

/** A request body as a stream; see {@link openBody}. */
export interface RequestBody {
  readonly stream: PassThrough
  /** True once the client went away. */
  readonly aborted: boolean
  /** Stops taking the body: what still comes is read and dropped, so an answer can reach the client. */
  drop(): void
}

/**
 * Takes a uWS request body as a stream. Call it synchronously in the
 * handler: uWS hands the body only to an `onData` attached before the first
 * await. The body is buffered (bounded, the socket paused) until read; once
 * it is whole, the socket stays paused until {@link RequestBody.drop}.
 * It takes the response's one `onAborted` slot: `onAbort` is called too.
 */
export function openBody(res: HttpResponse, onAbort?: () => void): RequestBody {
  let dropped = false
  let aborted = false
  let paused = false
  const resume = (): void => {
    // Only a paused response: resume() on one that is not stalls the next request on a keep-alive connection.
    if (!paused || aborted) return
    paused = false
    res.resume()
  }
  const stream = new PassThrough({ highWaterMark: BODY_BUFFER })
  stream.on('error', () => {})
  res.onData((chunk, isLast) => {
    if (dropped || stream.destroyed) return
    const more = stream.write(Buffer.from(chunk.slice(0)))
    if (isLast) {
      stream.end()
      // Nothing more is read from the connection until this request is answered (drop() resumes): uWS closes a
      // connection, unanswered, when the next request's head arrives while an answer is still pending, so a
      // pipelined request that comes later waits in the socket instead. (One that came in the same read as
      // the end of this body is beyond reach: uWS has parsed it, and closed, before this callback returns.)
      paused = true
      res.pause()
    } else if (!more) {
      paused = true
      res.pause()
      stream.once('drain', () => dropped || resume())
    }
  })
  res.onAborted(() => {
    aborted = true
    onAbort?.()
    stream.destroy(createError('ESPRA_ERR_UPLOAD_BAD_BODY', { reason: 'the client went away' }))
  })
  return {
    stream,
    get aborted() {
      return aborted
    },
    drop() {
      if (dropped) return
      dropped = true
      stream.unpipe()
      if (!stream.destroyed) stream.resume()
      resume()
    },
  }
}

/** Disk full or over quota → `ESPRA_ERR_UPLOAD_DISK_FULL` (507); anything else as it is. */
export function diskError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOSPC' || code === 'EDQUOT') return createError('ESPRA_ERR_UPLOAD_DISK_FULL', { reason: code })
  return err
}

/** A client-given file name made safe to record: percent-decoded, no control characters or slashes, at most 255 characters. */
export function cleanName(raw: string | undefined): string | null {
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

/** What of an upload's token goes with its file: owner, the Live channel that hears it, whether it may be shown inline. */
export interface UploadWho {
  readonly owner?: string | undefined
  readonly channel?: string | undefined
  readonly inline?: boolean | undefined
  /** The upload token's id, spent with the record in one transaction (`POST /upload`); absent when it was spent before (tus). */
  readonly token?: string | undefined
}

export interface UploadPipeline {
  readonly blobs: BlobStore
  readonly datastore: Datastore
  /** The seed, through the parent (datastore ops, `files.changed`). */
  readonly seed: FileChangeLink
  /** `<data-dir>/uploads-tmp`: where bodies are received. */
  readonly tmpDir: string
  /** Publishes to a Live channel, best effort (nothing when `channel` is undefined). */
  publish(channel: string | undefined, data: Record<string, unknown>): void
  /**
   * Stores, records and announces the file at `path` (which is gone
   * afterwards), then publishes `upload.done`. 200 when stored, 202 when
   * kept pending for the retry job. Throws what is not transient.
   */
  finish(path: string, got: Received, who: UploadWho): Promise<{ status: 200 | 202; result: UploadResult }>
  close(): Promise<void>
  destroy(): void
}

export async function createUploadPipeline(ctx: ChildContext, counters: FileCounters): Promise<UploadPipeline & Handle> {
  const { config, log } = ctx
  checkWhirlpool()
  const blobs = await createBlobStore(blobStoreConfig(config))
  const tmpDir = uploadDirs(config).tmp
  await mkdir(tmpDir, { recursive: true })
  const seed: FileChangeLink = {
    request: <R>(op: string, body: unknown, timeoutMs = SEED_TIMEOUT_MS): Promise<R> =>
      ctx.parent.request<R>({ t: 'upload-seed', op, body, timeoutMs } satisfies UploadSeedRequest, timeoutMs + 1000),
  }
  const datastore = createDatastoreClient(seed)
  const committer = createUploadCommitter(seed)
  let publisher: LivePublisher | null = null
  const livePublisher = (): LivePublisher => {
    if (publisher === null) {
      publisher = createLivePublisher({ secret: config.secret, id: `${config.nodeId.slice(0, 40)}/upload-${process.pid}`, log, linkOffset: config.liveLinkOffset, maxFrame: config.maxFrame, maxMessage: config.liveMaxMessage })
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

  async function finish(path: string, got: Received, who: UploadWho): Promise<{ status: 200 | 202; result: UploadResult }> {
    const file: UploadFile = {
      key: blobKeyOfUpload(got.sha256), size: got.size, sha256: got.sha256, whirlpool: got.whirlpool, type: got.type,
      filename: got.filename, owner: who.owner ?? null, ...(who.inline === true ? { inline: true } : {}),
    }
    const token = who.token ?? null
    let stored: { record: FileRecord; fresh: boolean } | null = null
    try {
      if (token === null) stored = await storeFile(blobs, committer, path, file, got.gzipPath ?? null, got.streamed ?? null)
      else {
        await storeBlob(blobs, path, file, got.gzipPath ?? null, got.streamed ?? null)
        const record = fileRecord(file)
        // One seed round trip: the token spent and the record written in one transaction, fileservers told (upload-commit.ts).
        const done = await commitWithToken(committer, token, record)
        stored = { record: done.record ?? record, fresh: done.fresh }
      }
    } catch (err) {
      if (!isTransient(err)) {
        counters.uploads.failed++
        throw err
      }
      // The store is out of reach: the token is spent now (so the answer below holds), the record once the bytes are stored.
      if (token !== null) await commitWithToken(committer, token, null)
      log.warn({ err, sha256: file.sha256 }, 'upload kept pending: the store is out of reach')
      await keepPending(config, path, file)
      ctx.parent.send({ t: 'upload-pending' } satisfies UploadToParent)
    }
    await unlink(path).catch(() => {})
    if (got.gzipPath) await unlink(got.gzipPath).catch(() => {})
    const result: UploadResult = stored === null
      ? { ...file, url: urlOfUpload(file.sha256), pending: true }
      : { ...stored.record, url: urlOfUpload(stored.record.sha256), pending: false, deduplicated: !stored.fresh }
    publish(who.channel, { t: 'upload.done', bytes: got.size, key: result.key, sha256: result.sha256, url: result.url, pending: result.pending })
    counters.uploads[stored === null ? 'pending' : stored.fresh ? 'stored' : 'deduplicated']++
    return { status: stored === null ? 202 : 200, result }
  }

  return {
    blobs, datastore, seed, tmpDir, publish, finish,
    async close() {
      committer.close()
      await publisher?.close()
      await blobs.close()
    },
    destroy() {
      committer.close()
      void publisher?.close()
      void blobs.close()
    },
  }
}
