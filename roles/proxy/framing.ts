/**
 * Body and frame boundaries, found without copying: the proxy forwards the
 * bytes as they came and only needs to know where a message ends. A chunked
 * body (RFC 9112 §7.1) is scanned byte by byte in its size lines and skipped
 * by arithmetic in its data; WebSocket frames from the Live node are tracked
 * so the proxy can add a close frame between two of them.
 */

const enum Chunk {
  Size,
  /** Whitespace after the size: only more of it, `;` or the line end may follow (RFC 9112 §7.1.1 BWS). */
  SizeBws,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  EndLf,
  Done,
}

/** Largest chunk-size accepted (hex digits); more is a malformed body. */
const MAX_SIZE_DIGITS = 12

export class ChunkedScanner {
  /**
   * `extensions` false refuses chunk extensions (`2;x=y`): legal HTTP, but a
   * Live node (uWS) drops the connection on them, so a request body with
   * one is refused at the proxy. Responses may carry them.
   */
  constructor(private readonly extensions = true) {}

  private state = Chunk.Size
  private remaining = 0
  private digits = 0
  /** Set when the body is malformed; the caller answers 400 or cuts the connection. */
  error = false

  get done(): boolean {
    return this.state === Chunk.Done
  }

  reset(): void {
    this.state = Chunk.Size
    this.remaining = 0
    this.digits = 0
    this.error = false
  }

  /**
   * Scans `buf[start, end)` and returns the index just past the body's last
   * byte, or `end` if the body goes on (or `error` was set).
   */
  scan(buf: Buffer, start: number, end: number): number {
    let i = start
    while (i < end) {
      switch (this.state) {
        case Chunk.Data: {
          const n = Math.min(this.remaining, end - i)
          i += n
          this.remaining -= n
          if (this.remaining === 0) this.state = Chunk.DataCr
          continue
        }
        case Chunk.Size: {
          const c = buf[i]!
          const v = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail(end)
            this.remaining = this.remaining * 16 + v
          } else if (this.digits === 0) {
            return this.fail(end)
          } else if (c === 0x0d) {
            this.state = Chunk.SizeLf
          } else if (c === 0x3b && this.extensions) {
            this.state = Chunk.Ext
          } else if (c === 0x20 || c === 0x09) {
            this.state = Chunk.SizeBws
          } else {
            return this.fail(end)
          }
          break
        }
        case Chunk.SizeBws: {
          const c = buf[i]!
          if (c === 0x3b && this.extensions) this.state = Chunk.Ext
          else if (c === 0x0d) this.state = Chunk.SizeLf
          else if (c !== 0x20 && c !== 0x09) return this.fail(end)
          break
        }
        case Chunk.Ext:
          if (buf[i] === 0x0d) this.state = Chunk.SizeLf
          else if (buf[i] === 0x0a) return this.fail(end)
          break
        case Chunk.SizeLf:
          if (buf[i] !== 0x0a) return this.fail(end)
          this.digits = 0
          this.state = this.remaining === 0 ? Chunk.TrailerStart : Chunk.Data
          break
        case Chunk.DataCr:
          if (buf[i] !== 0x0d) return this.fail(end)
          this.state = Chunk.DataLf
          break
        case Chunk.DataLf:
          if (buf[i] !== 0x0a) return this.fail(end)
          this.state = Chunk.Size
          break
        // A bare LF in a trailer would end a line for a lenient parser behind us and not for us: refused.
        case Chunk.TrailerStart:
          if (buf[i] === 0x0a) return this.fail(end)
          this.state = buf[i] === 0x0d ? Chunk.EndLf : Chunk.TrailerLine
          break
        case Chunk.TrailerLine:
          if (buf[i] === 0x0d) this.state = Chunk.TrailerLf
          else if (buf[i] === 0x0a) return this.fail(end)
          break
        case Chunk.TrailerLf:
          if (buf[i] !== 0x0a) return this.fail(end)
          this.state = Chunk.TrailerStart
          break
        case Chunk.EndLf:
          if (buf[i] !== 0x0a) return this.fail(end)
          this.state = Chunk.Done
          return i + 1
        case Chunk.Done:
          return i
      }
      i++
    }
    return end
  }

  /** True between two chunks: a last chunk written now ends the body cleanly. */
  get atChunkBoundary(): boolean {
    return this.state === Chunk.Size && this.digits === 0
  }

  private fail(end: number): number {
    this.error = true
    return end
  }
}

/**
 * Tracks WebSocket frame boundaries in one direction (RFC 6455 §5.2) so a
 * close frame can be written between two frames, never inside one.
 */
export class WsFrameTracker {
  /** Header bytes still needed; 0 with `payload` 0 means "between frames". */
  private header = new Uint8Array(14)
  private have = 0
  private need = 2
  private payload = 0

  get atBoundary(): boolean {
    return this.have === 0 && this.payload === 0
  }

  track(buf: Buffer, start: number, end: number): void {
    let i = start
    while (i < end) {
      if (this.payload > 0) {
        const n = Math.min(this.payload, end - i)
        this.payload -= n
        i += n
        continue
      }
      this.header[this.have++] = buf[i++]!
      if (this.have === 2) {
        const b1 = this.header[1]!
        const len = b1 & 0x7f
        this.need = 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0)
      }
      if (this.have >= 2 && this.have === this.need) {
        const b1 = this.header[1]!
        const len = b1 & 0x7f
        const h = this.header
        this.payload =
          len === 126 ? (h[2]! << 8) | h[3]!
          : len === 127 ? (h[6]! * 2 ** 24 + ((h[7]! << 16) | (h[8]! << 8) | h[9]!)) + (h[2]! * 2 ** 56 + h[3]! * 2 ** 48 + h[4]! * 2 ** 40 + h[5]! * 2 ** 32)
          : len
        this.have = 0
        this.need = 2
      }
    }
  }
}

/** An unmasked close frame (server to client) with a code and a short reason. */
export function wsCloseFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason.slice(0, 120), 'utf8')
  const frame = Buffer.allocUnsafe(4 + text.length)
  frame[0] = 0x88
  frame[1] = 2 + text.length
  frame.writeUInt16BE(code, 2)
  text.copy(frame, 4)
  return frame
}
