/**
 * The gzip copy of a compressible upload, made while its body arrives: each
 * chunk goes on to the received file and into gzip (level 9, as stored; zlib
 * works on libuv's thread pool, so it overlaps the receiving instead of
 * following it), whose output lands in `<path>.gz`. The body waits when gzip
 * falls behind, so memory stays bounded. The store then takes `<path>.gz` as
 * it is (`BlobStore.putFile`).
 */
import { createWriteStream } from 'node:fs'
import { Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip, type Gzip } from 'node:zlib'

/** Gzip level of stored uploads (also when the retry job compresses a pending one). */
export const UPLOAD_GZIP_LEVEL = 9

export interface GzipCopy {
  /** Put it in the body's pipeline, before the received file's write stream. */
  readonly tee: Transform
  /** Where the gzip lands. */
  readonly path: string
  /** Resolves once `path` is whole and closed (after the body's pipeline ended); rejects when gzip or its write failed. */
  readonly done: Promise<void>
}

/** Passes every chunk on and writes it to `side` too, waiting for `side` when it is full; ends `side` at the end. */
class Tee extends Transform {
  constructor(private readonly side: Gzip) {
    super()
    side.once('error', (err) => this.destroy(err))
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.push(chunk)
    if (this.side.write(chunk)) done()
    else this.side.once('drain', () => done())
  }
  override _flush(done: TransformCallback): void {
    this.side.end()
    done()
  }
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    if (err !== null) this.side.destroy(err)
    done(err)
  }
}

/** Starts the gzip copy of a body being received into `receivedPath` (and through `through` on its way to `<path>.gz`). */
export function startGzipCopy(receivedPath: string, through: Transform | null = null): GzipCopy {
  const path = `${receivedPath}.gz`
  const gzip = createGzip({ level: UPLOAD_GZIP_LEVEL })
  const file = createWriteStream(path, { flags: 'wx' })
  // `through`: the gzip also goes to the blob store as it comes (upload-stream.ts).
  const done = through === null ? pipeline(gzip, file) : pipeline(gzip, through, file)
  // Awaited by the caller once the body is in; a failure before that destroys the tee, and so the body's pipeline.
  done.catch(() => {})
  return { tee: new Tee(gzip), path, done }
}
