/**
 * How a failed request is logged. A server fault (status 500 and up, or an
 * error without a code) is an `error` line with the error and its stack: an
 * operator must see it. A client error (a coded error whose status is below
 * 500: a bad token, a type refused, a malformed body, a client that went
 * away) is the client's doing, not the node's: one `info` line with code,
 * status and message, no stack, and at most `limit` of them per
 * `intervalMs`; past that they are counted and the count is logged once the
 * interval is over, so no client can flood the log.
 */
import { ERRORS, toWire, type ErrorCode } from '../core/errors.js'
import type { Logger } from '../core/log.js'

export interface RequestErrorLogOptions {
  /** Client errors logged per interval (default 20). */
  readonly limit?: number
  readonly intervalMs?: number
  readonly now?: () => number
}

/** The status a thrown error answers with: its code's, else 500. */
export function errorStatus(err: unknown): number {
  return ERRORS[toWire(err).code as ErrorCode]?.status ?? 500
}

/** A logging function for {@link createHttpServer}'s `onError`. */
export function createRequestErrorLog(log: Logger, { limit = 20, intervalMs = 10_000, now = Date.now }: RequestErrorLogOptions = {}): (err: unknown) => void {
  let windowStart = -Infinity
  let logged = 0
  let dropped = 0
  return (err) => {
    const status = errorStatus(err)
    if (status >= 500) return void log.error({ err }, 'request handler failed')
    const t = now()
    if (t - windowStart >= intervalMs) {
      if (dropped > 0) log.info({ dropped, intervalMs }, `${dropped} more client errors were not logged`)
      windowStart = t
      logged = 0
      dropped = 0
    }
    if (logged >= limit) return void dropped++
    logged++
    const { code, message } = toWire(err)
    log.info({ code, status, reason: message }, 'request refused (client error)')
  }
}
