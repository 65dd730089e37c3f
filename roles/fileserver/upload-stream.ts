/**
 * The blob-store copy of an upload made while its body arrives, on a store
 * that writes as bytes come (S3: multipart, `BlobStore.openStream`): the
 * bytes as they will be stored (as sent, or the gzip of them for a
 * compressible type) go to a temporary key `uploads-tmp/<node>/<random>`
 * as they pass, and once the body is whole and hashed the object is moved
 * on the server to `files/<sha256>` (CopyObject) with its final type and
 * metadata. So the finished file is not read again and sent after the body;
 * what is left at the end is one copy on the server.
 *
 * The received file is still written locally beside it: when the store
 * fails mid-body, the stream is dropped (the body goes on, never failed by
 * the store), and the file is stored from that copy or kept pending as
 * before (upload-store.ts). A process killed mid-upload leaves an
 * unfinished multipart upload or a temporary object: a bucket lifecycle
 * rule removes them (docs/fileserver.md, "Uploads").
 */
import { randomBytes } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import type { BlobStore, BlobStream, PutOptions } from '../../lib/storage/blob-store.js'

export interface StreamedBlob {
  /** Put it in the pipeline where the bytes are as stored (after gzip for a compressible type). */
  readonly tee: Transform
  /**
   * Moves the finished object to `key` (unless an object is there: the same
   * bytes, then the temporary one is removed). False when the stream was
   * dropped (the store failed mid-body): store the local file instead.
   */
  finish(key: string, options: PutOptions): Promise<boolean>
  /** Removes what was sent (the body failed). */
  abort(): Promise<void>
}

/** Passes every chunk on and writes it to the store's stream too (waiting for it when it is full); a store failure only drops the stream. */
class StoreTee extends Transform {
  failed: Error | null = null
  constructor(private readonly side: BlobStream) {
    super()
    side.on('error', (err: Error) => void (this.failed ??= err))
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.push(chunk)
    if (this.failed !== null || this.side.destroyed) return done()
    if (this.side.write(chunk)) return done()
    const go = (): void => {
      this.side.off('drain', go)
      this.side.off('close', go)
      done()
    }
    this.side.on('drain', go)
    this.side.on('close', go)
  }
  override _flush(done: TransformCallback): void {
    if (this.failed === null && !this.side.destroyed) this.side.end()
    done()
  }
}

/** Starts the stream for one upload; null when the store writes no streams (local: it links the received file). */
export function startStreamedBlob(blobs: BlobStore, nodeId: string): StreamedBlob | null {
  if (blobs.openStream === undefined || blobs.moveStreamed === undefined) return null
  const tmpKey = `uploads-tmp/${nodeId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'node'}/${randomBytes(12).toString('hex')}`
  const stream = blobs.openStream(tmpKey)
  const tee = new StoreTee(stream)
  async function abort(): Promise<void> {
    // Waits for a last write already sent (the body had ended), so the delete comes after the object it made.
    await stream.abort()
    await blobs.delete(tmpKey).catch(() => {})
  }
  return {
    tee,
    abort,
    async finish(key, options) {
      let size: number
      try {
        if (tee.failed !== null) throw tee.failed
        size = (await stream.done).size
      } catch {
        // A last write can fail at the client after the server made the object: that goes too.
        await abort()
        return false
      }
      if ((await blobs.head(key)) !== null) {
        await blobs.delete(tmpKey).catch(() => {})
        return true
      }
      try {
        await blobs.moveStreamed!(tmpKey, key, size, options)
      } catch (err) {
        await blobs.delete(tmpKey).catch(() => {})
        throw err
      }
      return true
    },
  }
}
