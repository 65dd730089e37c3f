/**
 * Sending a meta request again when the link under it dropped: for ops whose
 * repetition changes nothing (a datastore read or put, a lease renewal), and
 * for ops that carry an op id the seed applies once (lib/storage/op-id.ts:
 * the caller puts it in `body` once, so every attempt sends the same). A
 * failure with `ESPRA_ERR_META_CLOSED` (the link dropped or is down) or
 * `ESPRA_ERR_SEED_NOT_LEADER` means no seed that is still there applied it,
 * so the next link may take it: it is sent again with a backoff from 100 ms
 * to 1 s (equal jitter, so nodes that lost one seed do not come back in
 * step) until the caller's window has passed, then its last error is thrown.
 * A link closed on purpose (an error with `details.stopped`) or the resender
 * closed ends the waiting at once.
 */
import type { EspraError } from '../core/errors.js'

const RETRYABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_SEED_NOT_LEADER'])
const FIRST_MS = 100
const MAX_MS = 1000

export interface MetaRequester {
  request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R>
}

export interface Resender {
  /**
   * Sends `op` until it is answered, fails otherwise than by the link, or
   * `withinMs` has passed since the first send; `timeoutMs`: each attempt's
   * own (the link's default when absent).
   */
  send<R>(op: string, body: unknown, withinMs: number, timeoutMs?: number): Promise<R>
  /** Ends every wait at once: each op throws its last error. */
  close(): void
}

export function createResender(link: MetaRequester): Resender {
  let closed = false
  const waiting = new Set<() => void>()

  const pause = (ms: number) => new Promise<void>((resolve) => {
    const wake = () => {
      clearTimeout(timer)
      waiting.delete(wake)
      resolve()
    }
    const timer = setTimeout(wake, ms)
    waiting.add(wake)
  })

  return {
    async send<R>(op: string, body: unknown, withinMs: number, timeoutMs?: number): Promise<R> {
      const started = Date.now()
      for (let attempt = 1; ; attempt++) {
        try {
          return await (timeoutMs === undefined ? link.request<R>(op, body) : link.request<R>(op, body, timeoutMs))
        } catch (err) {
          const { code, details } = err as EspraError
          const stopped = (details as { stopped?: unknown } | undefined)?.stopped === true
          const left = started + withinMs - Date.now()
          if (!RETRYABLE.has(code) || stopped || closed || left <= 0) throw err
          const step = Math.min(MAX_MS, FIRST_MS * 2 ** Math.min(attempt - 1, 10))
          await pause(Math.min(left, step / 2 + Math.random() * (step / 2)))
          if (closed) throw err
        }
      }
    },
    close() {
      closed = true
      for (const wake of [...waiting]) wake()
    },
  }
}
