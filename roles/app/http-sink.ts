/**
 * Where the worker pool writes one HTTP request's answer (a ResponseSink
 * over its uWS response), and the app child's error answers. One object per
 * request with its methods on the prototype: the request path of an app
 * child's main thread allocates no closures for its answer (a dozen per
 * request before, each one garbage for the child's main thread to collect;
 * docs/benchmarks.md, `bench/app-dispatch`). Every write is corked: answers
 * arrive from the worker's ring or messages, outside the uWS handler.
 */
import { ERRORS, type ErrorCode } from '../../lib/core/errors.js'
import { answerLater, statusLine } from '../../lib/http/server.js'
import type { HttpResponse } from '../../lib/http/uws.js'
import type { AnswerMeter } from './answer-meter.js'
import type { ResponseSink } from './pool-state.js'

const RETRY_AFTER_S = '1'

/** The build that answers a platform error (none from the worker): the one being served. */
export interface ServedBuild {
  readonly build: string | null
}

/** Writes an error answer as JSON (503s with Retry-After); nothing once the client has gone. */
export function sendError(res: HttpResponse, code: ErrorCode, message: string, extra: Record<string, unknown> = {}): void {
  const status = ERRORS[code]?.status ?? 500
  answerLater(res, () => {
    res.writeStatus(statusLine(status)).writeHeader('Content-Type', 'application/json')
    if (status === 503) res.writeHeader('Retry-After', RETRY_AFTER_S)
    res.end(JSON.stringify({ code, message, ...extra }))
  })
}

// The answer being corked: `res.cork` runs its callback at once, so these stand in for a closure per answer.
let corkRes: HttpResponse | null = null
let corkStatus = 0
const NO_HEADERS: [string, string][] = []
let corkHeaders = NO_HEADERS
let corkBody: Uint8Array | null = null
let corkBuild = ''

function writeCorked(): void {
  const res = corkRes!
  res.writeStatus(statusLine(corkStatus))
  for (const [name, value] of corkHeaders) res.writeHeader(name, value)
  res.writeHeader('X-Espra-Build', corkBuild)
  if (corkBody !== null) res.end(corkBody)
}

function endCorked(): void {
  corkRes!.end()
}

export class HttpSink implements ResponseSink {
  aborted = false
  /** A streamed chunk waiting for the socket to drain: told the client is gone if it aborts. */
  private waiting: ((ok: boolean) => void) | null = null
  private started = false

  /** `startedAt`: performance.now() when the request came (for the answer meter). */
  constructor(readonly res: HttpResponse, private readonly startedAt: number, private readonly meter: AnswerMeter, private readonly served: ServedBuild) {}

  /** The client went away (uWS `onAborted`). */
  abort(): void {
    this.aborted = true
    const waiting = this.waiting
    this.waiting = null
    waiting?.(false)
  }

  /** Counts the answer's status for canary deploys; `build` null for the platform's own errors (the build served). */
  private count(status: number, build: string | null): void {
    const by = build ?? this.served.build
    if (by !== null) this.meter.answer(by, status, this.startedAt)
  }

  private cork(write: () => void, status: number, headers: [string, string][], body: Uint8Array | null, build: string): void {
    corkRes = this.res
    corkStatus = status
    corkHeaders = headers
    corkBody = body
    corkBuild = build
    try {
      answerLater(this.res, write)
    } finally {
      corkRes = corkBody = null
      corkHeaders = NO_HEADERS
    }
  }

  whole(status: number, headers: [string, string][], body: Uint8Array, build: string): void {
    this.count(status, build)
    this.cork(writeCorked, status, headers, body, build)
  }

  head(status: number, headers: [string, string][], build: string): void {
    this.count(status, build)
    this.started = true
    this.cork(writeCorked, status, headers, null, build)
  }

  chunk(data: Uint8Array, more: (ok: boolean) => void): void {
    let written = false
    this.res.cork(() => (written = this.res.write(data)))
    if (written) return more(true)
    // uWS keeps what it could not send; the producer waits until the socket drained.
    this.waiting = more
    this.res.onWritable(() => {
      this.waiting = null
      more(!this.aborted)
      return true
    })
  }

  end(): void {
    this.cork(endCorked, 0, NO_HEADERS, null, '')
  }

  fail(code: ErrorCode, message: string, extra?: Record<string, unknown>): void {
    // A half-sent stream cannot become an error answer: cut it so the client sees the failure.
    if (this.started) return void this.res.close()
    this.count(ERRORS[code]?.status ?? 500, null)
    sendError(this.res, code, message, extra)
  }
}
