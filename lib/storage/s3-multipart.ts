/**
 * S3 writes as the bytes arrive, for objects whose key is known only at the
 * end (content-addressed uploads: the key is the sha256 of the bytes):
 *
 * - {@link S3StreamUpload}: a Writable that sends its bytes to a temporary
 *   key as they come, with CreateMultipartUpload / UploadPart (parts of
 *   `partSize`, at least 5 MB except the last; at most `queue` in flight,
 *   the writer waits beyond that, so at most `partSize × (queue + 1)` is
 *   buffered) / CompleteMultipartUpload; a body smaller than one part is one
 *   PutObject at the end. A failure, or `abort()`, aborts the multipart
 *   upload (AbortMultipartUpload), so no parts are left billed.
 * - {@link copyObject}: the server-side move to the final key with its final
 *   type, encoding and metadata (CopyObject, `MetadataDirective: REPLACE`;
 *   above 5 GB, S3's CopyObject limit, a multipart copy with UploadPartCopy
 *   in 1 GB ranges). The bytes do not pass through this process again.
 */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand,
  PutObjectCommand, UploadPartCommand, UploadPartCopyCommand, type S3Client,
} from '@aws-sdk/client-s3'
import { Writable } from 'node:stream'
import type { PutOptions } from './blob-key.js'

/** S3's CopyObject limit; larger objects are copied in parts. */
const COPY_LIMIT = 5 * 1024 ** 3
const COPY_PART = 1024 ** 3

export interface StreamUploadResult {
  readonly size: number
  /** Parts sent (0: one PutObject). */
  readonly parts: number
}

export class S3StreamUpload extends Writable {
  private uploadId: Promise<string> | null = null
  private readonly chunks: Buffer[] = []
  private buffered = 0
  private readonly parts: Promise<{ ETag: string; PartNumber: number }>[] = []
  private readonly inFlight = new Set<Promise<unknown>>()
  size = 0
  /** Settles once the object is whole under the key (or the upload failed and was aborted). */
  readonly done: Promise<StreamUploadResult>
  private settle!: { resolve: (r: StreamUploadResult) => void; reject: (err: Error) => void }

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    readonly key: string,
    private readonly partSize: number,
    private readonly queue = 4,
  ) {
    super({ highWaterMark: 256 * 1024 })
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }))
    this.done.catch(() => {})
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, next: (err?: Error | null) => void): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    this.size += chunk.length
    if (this.buffered < this.partSize) return next()
    const sent = this.sendPart()
    if (this.inFlight.size < this.queue) return next()
    // Enough parts in flight: take more once one has gone.
    Promise.race(this.inFlight).then(() => next(), (err: Error) => next(err))
    void sent
  }

  /** The last PutObject or CompleteMultipartUpload, once the stream has ended. */
  private finishing: Promise<void> | null = null

  override _final(next: (err?: Error | null) => void): void {
    this.finishing = this.finish().then((r) => {
      this.settle.resolve(r)
      next()
    }, (err: Error) => {
      this.settle.reject(err)
      next(err)
    })
  }

  override _destroy(err: Error | null, next: (err: Error | null) => void): void {
    this.abortParts().finally(() => {
      this.settle.reject(err ?? new Error('the upload was abandoned'))
      next(err)
    })
  }

  /**
   * Stops the upload and removes the parts sent (the multipart upload
   * aborted). Resolves once nothing more can land: a last write already
   * sent (the stream had ended) is waited for, and when it made the object,
   * `done` resolves and the caller deletes the object.
   */
  async abort(): Promise<void> {
    this.destroy()
    await this.abortParts()
  }

  private aborted: Promise<void> | null = null
  private completed = false
  private abortParts(): Promise<void> {
    this.aborted ??= (async () => {
      await this.finishing
      // Also reached after a success (a Writable destroys itself once finished): nothing to abort then.
      if (this.uploadId === null || this.completed) return
      const id = await this.uploadId.catch(() => null)
      if (id === null) return
      await Promise.allSettled(this.inFlight)
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: id })).catch(() => {})
    })()
    return this.aborted
  }

  private sendPart(): Promise<unknown> {
    const body = Buffer.concat(this.chunks)
    this.chunks.length = 0
    this.buffered = 0
    this.uploadId ??= this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key })).then((r) => r.UploadId!)
    const PartNumber = this.parts.length + 1
    const part = this.uploadId.then(async (UploadId) => {
      const r = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId, PartNumber, Body: body, ContentLength: body.length }))
      return { ETag: r.ETag!, PartNumber }
    })
    this.parts.push(part)
    const tracked = part.finally(() => this.inFlight.delete(tracked))
    tracked.catch(() => {})
    this.inFlight.add(tracked)
    return tracked
  }

  private async finish(): Promise<StreamUploadResult> {
    if (this.uploadId === null) {
      // Smaller than one part: one PutObject.
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key, Body: Buffer.concat(this.chunks), ContentLength: this.buffered }))
      return { size: this.size, parts: 0 }
    }
    if (this.buffered > 0) void this.sendPart()
    const parts = await Promise.all(this.parts)
    const UploadId = await this.uploadId
    await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId, MultipartUpload: { Parts: parts } }))
    this.completed = true
    return { size: this.size, parts: parts.length }
  }
}

/** Copies `from` to `to` on the server with `options` as the object's type, encoding and metadata. */
export async function copyObject(client: S3Client, bucket: string, from: string, to: string, size: number, options: Required<Pick<PutOptions, 'contentType' | 'metadata'>> & { contentEncoding: string | null }): Promise<void> {
  const source = `${bucket}/${from.split('/').map(encodeURIComponent).join('/')}`
  const head = { Bucket: bucket, Key: to, ContentType: options.contentType, Metadata: { ...options.metadata }, ...(options.contentEncoding !== null ? { ContentEncoding: options.contentEncoding } : {}) }
  if (size <= COPY_LIMIT) {
    await client.send(new CopyObjectCommand({ ...head, CopySource: source, MetadataDirective: 'REPLACE' }))
    return
  }
  const { UploadId } = await client.send(new CreateMultipartUploadCommand(head))
  try {
    const parts = []
    for (let start = 0, n = 1; start < size; start += COPY_PART, n++) {
      const r = await client.send(new UploadPartCopyCommand({
        Bucket: bucket, Key: to, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${Math.min(size, start + COPY_PART) - 1}`,
      }))
      parts.push({ ETag: r.CopyPartResult!.ETag!, PartNumber: n })
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }))
  } catch (err) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId })).catch(() => {})
    throw err
  }
}
