/**
 * A response body streamed to uWS with backpressure: a chunk uWS cannot take
 * now pauses the source until the socket drains. The request's abort handler
 * (attached synchronously, before any await: `watchAbort`) stops the source.
 */
import type { Readable } from 'node:stream'
import type { HttpResponse } from './uws.js'

/** Whether the client went away, and what to stop then. */
export interface Flow {
  aborted: boolean
  cleanup: (() => void) | null
}

/** Attaches the abort handler (synchronously, before any await) and returns the flow it updates. */
export function watchAbort(res: HttpResponse): Flow {
  const flow: Flow = { aborted: false, cleanup: null }
  res.onAborted(() => {
    flow.aborted = true
    flow.cleanup?.()
  })
  return flow
}

/**
 * Sends `stream` after the head is written: exactly `total` bytes with
 * `tryEnd` (the length is already announced), or, with `total` null, chunked
 * with `write` and `end`. Resolves when the body is out, the client is gone,
 * or the source failed (then the connection is cut: with the head out, that
 * is the only honest signal left).
 */
export function streamBody(res: HttpResponse, flow: Flow, stream: Readable, total: number | null): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      stream.destroy()
      resolve()
    }
    flow.cleanup = finish
    stream.on('data', (chunk: Buffer) => {
      if (flow.aborted) return
      const lastOffset = res.getWriteOffset()
      let ok = false
      let done = false
      res.cork(() => {
        if (total === null) ok = res.write(chunk)
        else [ok, done] = res.tryEnd(chunk, total)
      })
      if (done) return finish()
      if (ok) return
      stream.pause()
      res.onWritable((offset) => {
        // write() keeps what it could not send; tryEnd() wants the rest of the chunk again.
        if (total === null) {
          stream.resume()
          return true
        }
        const [ok2, done2] = res.tryEnd(chunk.subarray(offset - lastOffset), total)
        if (done2) finish()
        else if (ok2) stream.resume()
        return ok2
      })
    })
    stream.on('end', () => {
      if (total === null && !flow.aborted) res.cork(() => res.end())
    })
    stream.on('error', () => {
      if (!flow.aborted) res.close()
      resolve()
    })
    stream.on('close', () => resolve())
  })
}
