/**
 * A request body taken as bytes, for the one admin route that is not JSON
 * (`PUT /api/builds/uploads/:upload/files/:sha256`). It must be opened in
 * the handler's own call (uWS hands the body only to an `onData` attached
 * before the first await); from then on at most {@link HIGH_WATER} bytes
 * wait here, the socket paused beyond that, while the route reads them
 * chunk by chunk. Nothing holds a whole file.
 */
import { createError, EspraError } from '../../lib/core/errors.js'
import type { HttpResponse } from '../../lib/http/uws.js'

/** Bytes buffered before the socket is paused. */
const HIGH_WATER = 1024 * 1024

export interface RawBody {
  /** The next chunk, or null at the end of the body; rejects once the client went away. */
  read(): Promise<Buffer | null>
  /** Whether the whole body has arrived (then an answer may keep the connection). */
  readonly complete: boolean
  /** Bytes that arrived so far. */
  readonly received: number
  /** What Content-Length announced; null without one. */
  readonly length: number | null
  /** Stops reading: what still comes is dropped. */
  drop(): void
}

export function openRawBody(res: HttpResponse, length: number | null): RawBody {
  const queue: Buffer[] = []
  let queued = 0
  let received = 0
  let ended = false
  let dropped = false
  let paused = false
  let failed: EspraError | null = null
  let waiter: (() => void) | null = null
  const wake = (): void => {
    const w = waiter
    waiter = null
    w?.()
  }
  res.onData((chunk, last) => {
    received += chunk.byteLength
    if (last) ended = true
    if (dropped) return
    if (chunk.byteLength > 0) {
      queue.push(Buffer.from(chunk.slice(0)))
      queued += chunk.byteLength
    }
    if (!last && queued >= HIGH_WATER && !paused) {
      paused = true
      res.pause()
    }
    wake()
  })
  res.onAborted(() => {
    failed = createError('ESPRA_ERR_ADMIN_PUSH_SIZE', { reason: `the client went away after ${received} bytes`, received })
    wake()
  })
  const resume = (): void => {
    if (!paused || failed !== null) return
    paused = false
    res.resume()
  }
  return {
    async read() {
      for (;;) {
        if (failed !== null) throw failed
        const chunk = queue.shift()
        if (chunk !== undefined) {
          queued -= chunk.length
          if (queued < HIGH_WATER / 2) resume()
          return chunk
        }
        if (ended) return null
        await new Promise<void>((resolve) => (waiter = resolve))
      }
    },
    get complete() {
      return ended
    },
    get received() {
      return received
    },
    length,
    drop() {
      dropped = true
      queue.length = 0
      queued = 0
      resume()
    },
  }
}
