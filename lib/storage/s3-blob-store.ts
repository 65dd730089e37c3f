/**
 * The S3 blob store: AWS S3 or any S3-compatible service (`--s3-endpoint`,
 * addressed path style). Large bodies go up as multipart uploads through
 * `@aws-sdk/lib-storage` (5 MB parts, 4 in flight, so at most 20 MB of a
 * body is buffered); smaller ones as one PutObject.
 *
 * With a custom endpoint the SDK's default request checksums are turned off
 * (`WHEN_REQUIRED`): they send streamed bodies `aws-chunked`, which some
 * S3-compatible servers store verbatim, silently corrupting objects.
 *
 * Errors: no HTTP answer (refused, reset, DNS, timeout) or a 5xx is
 * `ESPRA_ERR_STORAGE_UNAVAILABLE`; any other refusal (no such bucket, access
 * denied) is `ESPRA_ERR_STORAGE_FAILED` with the S3 error name and status.
 */
import {
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { createReadStream } from 'node:fs'
import { PassThrough, Readable } from 'node:stream'
import { createError, EspraError } from '../core/errors.js'
import { checkKey, checkPrefix, checkPutOptions, checkRange, resolveRange, unsatisfiable, type ByteRange, type PutOptions } from './blob-key.js'
import type { BlobInfo, BlobListEntry, BlobObject, BlobStore, BlobStream, PutFileOptions, PutResult, StagedPut } from './blob-store.js'
import { copyObject, S3StreamUpload } from './s3-multipart.js'

export interface S3BlobStoreOptions {
  readonly bucket: string
  readonly region: string
  /** An S3-compatible service (`http(s)://host:port`); implies path-style addressing. Absent: AWS. */
  readonly endpoint?: string
  /** Absent: the SDK's default chain (environment, instance role, ...). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string }
  /** Attempts per request, retries included (SDK default 3). */
  readonly maxAttempts?: number
  /** TCP connect deadline (5 s). */
  readonly connectTimeoutMs?: number
  /** Deadline for each request's answer, including a stalled body (60 s). */
  readonly requestTimeoutMs?: number
  /** Multipart part size (5 MB, S3's minimum). */
  readonly partSize?: number
}

const MIN_PART = 5 * 1024 * 1024

interface SdkError {
  name?: string
  code?: string
  message?: string
  $metadata?: { httpStatusCode?: number }
}

function mapError(err: unknown, what: string): EspraError {
  if (err instanceof EspraError) return err
  const e = (err ?? {}) as SdkError
  const status = e.$metadata?.httpStatusCode
  const name = e.name ?? 'Error'
  if (status === undefined || status >= 500) {
    const reason = e.code ?? name
    return createError('ESPRA_ERR_STORAGE_UNAVAILABLE', {
      store: `S3 ${what}`, problem: `${reason}${e.message && e.message !== reason ? ` (${e.message})` : ''}`, reason, ...(status !== undefined ? { status } : {}),
    })
  }
  return createError('ESPRA_ERR_STORAGE_FAILED', { store: `S3 ${what}`, problem: `${name} (HTTP ${status})`, name, status })
}

// GET names a missing key NoSuchKey (a missing bucket is NoSuchBucket: a failure, not a miss);
// HEAD answers without a body, so any 404 there reads as a miss.
const noSuchKey = (err: unknown) => (err as SdkError)?.name === 'NoSuchKey'
const headMissing = (err: unknown) => (err as SdkError)?.$metadata?.httpStatusCode === 404
const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '')

/** Builds the client; no request is made until the first call. */
export function createS3BlobStore(opts: S3BlobStoreOptions): BlobStore {
  const config: S3ClientConfig = {
    region: opts.region,
    maxAttempts: opts.maxAttempts ?? 3,
    requestHandler: { connectionTimeout: opts.connectTimeoutMs ?? 5000, requestTimeout: opts.requestTimeoutMs ?? 60_000 },
    ...(opts.credentials ? { credentials: { ...opts.credentials } } : {}),
    ...(opts.endpoint !== undefined
      ? { endpoint: opts.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
      : {}),
  }
  return new S3BlobStore(new S3Client(config), opts.bucket, Math.max(MIN_PART, opts.partSize ?? MIN_PART))
}

class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly partSize: number,
  ) {}

  async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult> {
    checkKey(key)
    const opts = checkPutOptions(options)
    let size = 0
    let source: Buffer | Readable = body
    let sourceError = null as Error | null
    if (Buffer.isBuffer(body)) size = body.length
    else {
      // Count the bytes on their way through; an error in the caller's stream is theirs, rethrown as is.
      const counter = new PassThrough()
      counter.on('data', (chunk: Buffer) => void (size += chunk.length))
      body.once('error', (err) => {
        sourceError = err
        counter.destroy(err)
      })
      body.pipe(counter)
      source = counter
    }
    const upload = new Upload({
      client: this.client,
      partSize: this.partSize,
      queueSize: 4,
      leavePartsOnError: false,
      params: {
        Bucket: this.bucket, Key: key, Body: source, ContentType: opts.contentType, Metadata: opts.metadata,
        ...(opts.contentEncoding !== null ? { ContentEncoding: opts.contentEncoding } : {}),
      },
    })
    try {
      const out = await upload.done()
      return { key, size, etag: unquote(out.ETag) }
    } catch (err) {
      if (sourceError !== null) throw sourceError
      throw mapError(err, `put ${key}`)
    }
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<BlobObject | null> {
    checkKey(key)
    const range = options.range === undefined ? null : checkRange(options.range)
    const header = range === null ? undefined : 'suffix' in range ? `bytes=-${range.suffix}` : `bytes=${range.start}-${range.end ?? ''}`
    let out
    try {
      out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(header ? { Range: header } : {}) }))
    } catch (err) {
      if (noSuchKey(err)) return null
      if ((err as SdkError).$metadata?.httpStatusCode === 416) throw unsatisfiable(key, await this.sizeOf(key, err))
      throw mapError(err, `get ${key}`)
    }
    const body = out.Body as Readable
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange ?? '')
    const size = m ? Number(m[3]) : out.ContentLength ?? 0
    let span: { start: number; end: number } | null = null
    if (range !== null) {
      // Serving the wrong bytes as if they were the asked-for range is the worst outcome, and some
      // S3-compatible servers get suffix or one-byte ranges wrong: check the answer against the request.
      span = m ? { start: Number(m[1]), end: Number(m[2]) } : null
      const want = resolveRange(range, size)
      if (span === null || span.start !== want.start || span.end !== want.end) {
        body.destroy()
        throw createError('ESPRA_ERR_STORAGE_FAILED', {
          store: `S3 get ${key}`, problem: `asked for ${header}, the endpoint answered ${out.ContentRange ?? 'the whole object'}`, reason: 'range', asked: header, answered: out.ContentRange ?? null,
        })
      }
    }
    return {
      key, size, body, range: span,
      contentType: out.ContentType ?? 'application/octet-stream', contentEncoding: out.ContentEncoding ?? null,
      metadata: out.Metadata ?? {}, etag: unquote(out.ETag), lastModified: out.LastModified ?? new Date(0),
    }
  }

  async head(key: string): Promise<BlobInfo | null> {
    checkKey(key)
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      return {
        key, size: out.ContentLength ?? 0, contentType: out.ContentType ?? 'application/octet-stream',
        contentEncoding: out.ContentEncoding ?? null, metadata: out.Metadata ?? {}, etag: unquote(out.ETag),
        lastModified: out.LastModified ?? new Date(0),
      }
    } catch (err) {
      if (headMissing(err)) return null
      throw mapError(err, `head ${key}`)
    }
  }

  /**
   * The size of an object a range did not fit, for the 416: S3's InvalidRange
   * error states it (ActualObjectSize, as s3rver's does); else one HEAD asks.
   */
  private async sizeOf(key: string, err: unknown): Promise<number> {
    const stated = Number((err as { ActualObjectSize?: unknown }).ActualObjectSize)
    if (Number.isSafeInteger(stated) && stated >= 0) return stated
    return (await this.head(key))?.size ?? 0
  }

  /** Reads the file to S3 (multipart above the part size); the caller's `etag` is not S3's and is ignored. */
  async putFile(key: string, path: string, options?: PutFileOptions): Promise<PutResult> {
    const { etag: _ignored, ...opts } = options ?? {}
    return this.put(key, createReadStream(path), opts)
  }

  /** Multipart as the bytes arrive (s3-multipart.ts); a failure is mapped when `done` rejects. */
  openStream(tmpKey: string): BlobStream {
    checkKey(tmpKey)
    const upload = new S3StreamUpload(this.client, this.bucket, tmpKey, this.partSize)
    const done = upload.done.catch((err: unknown) => {
      throw mapError(err, `put ${tmpKey}`)
    })
    done.catch(() => {})
    return Object.assign(upload, { done }) as BlobStream
  }

  async moveStreamed(tmpKey: string, key: string, size: number, options?: PutOptions): Promise<void> {
    checkKey(tmpKey)
    checkKey(key)
    const opts = checkPutOptions(options)
    try {
      await copyObject(this.client, this.bucket, tmpKey, key, size, opts)
    } catch (err) {
      throw mapError(err, `copy ${tmpKey} to ${key}`)
    }
    await this.delete(tmpKey).catch(() => {})
  }

  /** An S3 PUT is durable when it returns: staging is putting (each message of a group its own PUT, in parallel). */
  async stage(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StagedPut> {
    return this.put(key, body, options)
  }

  async commit(): Promise<void> {}

  async discard(staged: readonly StagedPut[]): Promise<void> {
    await Promise.all(staged.map((s) => this.delete(s.key).catch(() => undefined)))
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }))
    } catch (err) {
      throw mapError(err, `delete ${key}`)
    }
  }

  async *list(prefix?: string): AsyncIterable<BlobListEntry> {
    const p = checkPrefix(prefix)
    let token: string | undefined
    do {
      let page
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, ...(p ? { Prefix: p } : {}), ...(token ? { ContinuationToken: token } : {}) }))
      } catch (err) {
        throw mapError(err, `list ${p}`)
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue
        yield { key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag), lastModified: o.LastModified ?? new Date(0) }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  async close(): Promise<void> {
    this.client.destroy()
  }
}
