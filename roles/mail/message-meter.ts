/**
 * The one pass over a message's DATA on its way to the blob store: counts
 * and hashes the bytes, keeps the header section (it is bounded) to read the
 * Message-ID, and checks the limits as the bytes go by:
 *
 * - size: past `maxBytes`;
 * - line: a line longer than `maxLine` octets, CRLF not counted (RFC 5322
 *   2.1.1: 998);
 * - header: a header section (up to the first empty line) over `maxHeader`
 *   octets, counting the line ends.
 *
 * From the first limit passed on, nothing more is passed on (the rest is read
 * and dropped, never buffered), so a refused message costs no memory; the
 * caller deletes what was stored and answers with {@link MessageMeter.refused}.
 */
import { createHash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

export interface MeterLimits {
  readonly maxBytes: number
  readonly maxLine: number
  readonly maxHeader: number
}

export type Refusal = 'size' | 'line' | 'header'

const LF = 0x0a
const CR = 0x0d

export class MessageMeter extends Transform {
  bytes = 0
  /** The first limit passed, or null. */
  refused: Refusal | null = null
  /** 1-based number of the line that was too long (for the log and the reply). */
  longLine = 0
  private readonly hash = createHash('sha256')
  private head: Buffer[] = []
  private headBytes = 0
  private inHeader = true
  /** Octets of the current line so far, its line end not included yet. */
  private lineBytes = 0
  private lines = 0

  constructor(private readonly limits: MeterLimits) {
    super()
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length
    if (this.refused !== null) return done()
    if (this.bytes > this.limits.maxBytes) return this.refuse('size', done)
    const headerEnd = this.scan(chunk)
    if (this.refused !== null) return done()
    if (this.inHeader || headerEnd !== -1) {
      this.head.push(headerEnd === -1 ? chunk : chunk.subarray(0, headerEnd))
      this.headBytes += headerEnd === -1 ? chunk.length : headerEnd
      if (headerEnd !== -1) this.inHeader = false
      if (this.headBytes > this.limits.maxHeader) return this.refuse('header', done)
    }
    this.hash.update(chunk)
    done(null, chunk)
  }

  /**
   * Walks the chunk's line ends: checks every line's length, and returns the
   * offset just past the empty line that ends the header section if it is in
   * this chunk (-1 otherwise). Sets `refused` on a long line.
   */
  private scan(chunk: Buffer): number {
    let headerEnd = -1
    let from = 0
    for (;;) {
      const lf = chunk.indexOf(LF, from)
      if (lf === -1) {
        this.lineBytes += chunk.length - from
        // An unfinished line: its CR may still come, so allow one octet for it.
        if (this.lineBytes > this.limits.maxLine + 1) this.refuseLine()
        break
      }
      this.lineBytes += lf - from
      const before = lf > 0 ? chunk[lf - 1] : this.prevByte
      // The line's length without its CRLF (or bare LF).
      const length = this.lineBytes - (this.lineBytes > 0 && before === CR ? 1 : 0)
      if (length > this.limits.maxLine) {
        this.refuseLine()
        break
      }
      this.lines++
      if (this.inHeader && headerEnd === -1 && length === 0) headerEnd = lf + 1
      this.lineBytes = 0
      from = lf + 1
    }
    this.prevByte = chunk[chunk.length - 1]!
    return headerEnd
  }

  /** The last octet of the previous chunk (a CR there may belong to a LF here). */
  private prevByte = 0

  private refuseLine(): void {
    this.refused = 'line'
    this.longLine = this.lines + 1
  }

  private refuse(why: Refusal, done: TransformCallback): void {
    this.refused = why
    done()
  }

  /** sha256 of the bytes passed on, lower-case hex (once the stream ended). */
  sha256(): string {
    return this.hash.digest('hex')
  }

  /** The Message-ID header's value without its angle brackets, or null. */
  messageId(): string | null {
    const head = Buffer.concat(this.head).toString('latin1')
    const m = /^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)/im.exec(head)
    if (m === null) return null
    const value = m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim().replace(/^<(.*)>$/, '$1').trim()
    return value === '' ? null : value.slice(0, 998)
  }
}
