/**
 * The one pass over a message's DATA on its way to the blob store: counts
 * and hashes the bytes, keeps the header section (at most 64 KB) to read the
 * Message-ID, and past `maxBytes` passes nothing on (the rest is read and
 * dropped, never buffered) so an oversized message costs no memory.
 */
import { createHash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

const MAX_HEAD_BYTES = 64 * 1024

export class MessageMeter extends Transform {
  bytes = 0
  exceeded = false
  private readonly hash = createHash('sha256')
  private head: Buffer[] = []
  private headBytes = 0
  private headDone = false

  constructor(private readonly maxBytes: number) {
    super()
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length
    if (this.exceeded || this.bytes > this.maxBytes) {
      this.exceeded = true
      return done()
    }
    this.hash.update(chunk)
    if (!this.headDone) {
      this.head.push(chunk)
      this.headBytes += chunk.length
      const text = Buffer.concat(this.head)
      if (text.indexOf('\r\n\r\n') !== -1 || text.indexOf('\n\n') !== -1 || this.headBytes >= MAX_HEAD_BYTES) {
        this.headDone = true
        this.head = [text.subarray(0, MAX_HEAD_BYTES)]
      }
    }
    done(null, chunk)
  }

  /** sha256 of the bytes passed on, lower-case hex (once the stream ended). */
  sha256(): string {
    return this.hash.digest('hex')
  }

  /** The Message-ID header's value without its angle brackets, or null. */
  messageId(): string | null {
    const head = Buffer.concat(this.head).toString('latin1')
    const end = head.search(/\r?\n\r?\n/)
    const m = /^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)/im.exec(end === -1 ? head : head.slice(0, end))
    if (m === null) return null
    const value = m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim().replace(/^<(.*)>$/, '$1').trim()
    return value === '' ? null : value.slice(0, 998)
  }
}
