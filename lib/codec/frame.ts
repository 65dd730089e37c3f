/**
 * Length-framed msgpack: each frame is a 4-byte big-endian payload length
 * followed by one msgpack value. Used on the meta port and internal links.
 */
import { Packr } from 'msgpackr'
import { createError } from '../core/errors.js'

const HEADER = 4

// Plain msgpack (no records) so any msgpack decoder can read our frames.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** Encodes one value as a complete frame (header + payload). */
export function encodeFrame(value: unknown): Buffer {
  const payload = packr.pack(value)
  const frame = Buffer.allocUnsafe(HEADER + payload.length)
  frame.writeUInt32BE(payload.length, 0)
  payload.copy(frame, HEADER)
  return frame
}

/**
 * Incremental decoder. Feed it socket chunks; it returns every complete frame's
 * value. It throws `ESPRA_ERR_FRAME_TOO_LARGE` as soon as a header announces a
 * frame over the limit (before buffering it) and `ESPRA_ERR_FRAME_MALFORMED`
 * when a payload is not exactly one msgpack value. After a throw the stream is
 * unusable: drop the peer.
 */
export class FrameDecoder {
  /**
   * Largest payload accepted. Writable so a server can start a connection with
   * a small limit while the peer is unauthenticated and raise it afterwards.
   */
  maxFrame: number
  private buffered: Buffer[] = []
  private size = 0
  /** Payload length of the frame being read, or -1 while reading a header. */
  private need = -1

  constructor(maxFrame: number) {
    this.maxFrame = maxFrame
  }

  /** True while a frame has started but not finished arriving. */
  get pending(): boolean {
    return this.size > 0
  }

  push(chunk: Buffer): unknown[] {
    this.buffered.push(chunk)
    this.size += chunk.length
    const out: unknown[] = []
    for (;;) {
      if (this.need < 0) {
        if (this.size < HEADER) return out
        const length = this.take(HEADER).readUInt32BE(0)
        if (length > this.maxFrame) {
          throw createError('ESPRA_ERR_FRAME_TOO_LARGE', {
            what: 'frame',
            length,
            limit: this.maxFrame,
          })
        }
        this.need = length
      }
      if (this.size < this.need) return out
      const payload = this.take(this.need)
      this.need = -1
      out.push(decodePayload(payload))
    }
  }

  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.size)
    const head = all.subarray(0, n)
    const rest = all.subarray(n)
    this.buffered = rest.length > 0 ? [rest] : []
    this.size = rest.length
    return head
  }
}

function decodePayload(payload: Buffer): unknown {
  if (payload.length === 0) throw createError('ESPRA_ERR_FRAME_MALFORMED', { reason: 'the frame is empty' })
  try {
    // unpackMultiple rejects trailing bytes that unpack() would silently ignore.
    const values = packr.unpackMultiple(payload) as unknown[]
    if (values.length !== 1) throw new Error(`${values.length} values in one frame`)
    return values[0]
  } catch (err) {
    throw createError('ESPRA_ERR_FRAME_MALFORMED', { reason: `not one msgpack value (${(err as Error).message})` })
  }
}
