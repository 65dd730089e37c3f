/**
 * A uWS app whose route handlers are wrapped once, at registration, so the
 * node can count in-flight requests and drain without dropping any:
 * stop accepting, answer every response with `Connection: close`, and close
 * the app once nothing is in flight and the connections have gone quiet.
 */
import { STATUS_CODES } from 'node:http'
import { ERRORS, createError, toWire, type ErrorCode } from '../core/errors.js'
import { StatusLatency } from '../core/latency-histogram.js'
import { uws, type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from './uws.js'

type Handler = (res: HttpResponse, req: HttpRequest) => void | Promise<void>
type Register = (pattern: string, handler: Handler) => TemplatedApp

const ROUTE_METHODS = ['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any'] as const

/** Per-response bookkeeping kept on the response object itself (no side map to clean up). */
const OPEN = Symbol('espra.open')
const BODY = Symbol('espra.bodyStarted')
const ABORT = Symbol('espra.onAborted')
const START = Symbol('espra.start')
const STATUS = Symbol('espra.statusClass')
interface Tracked extends HttpResponse {
  [OPEN]?: boolean
  /** performance.now() when the handler began. */
  [START]?: number
  /** Status class of the answer: first digit of the status line minus 1 (0 for 1xx … 4 for 5xx); 1 (2xx) until written. */
  [STATUS]?: number
  [BODY]?: boolean
  [ABORT]?: (() => void) | undefined
}

export interface HttpServerStats {
  /** Requests whose response has not finished yet. */
  inflight: number
  /** Long-lived work counted with {@link HttpServer.track} (e.g. WebSockets). */
  tracked: number
  /** Requests started since the server was made. */
  requests: number
  /** Answer latency by status class (the requests the client left and WebSocket upgrades are not in it); absent where not measured. */
  latency?: StatusLatency
}

export interface DrainOptions {
  /** Hard deadline: whatever is still in flight then is cut. */
  timeoutMs: number
  /** How long nothing must happen before the app closes (keep-alive clients get to hear `Connection: close`). */
  quietMs?: number
}

export interface HttpServer {
  /** The uWS app; routes added to it are tracked. */
  readonly app: TemplatedApp
  readonly draining: boolean
  /** Listens (SO_REUSEPORT, uWS's default) and resolves the bound port; rejects with `ESPRA_ERR_NODE_LISTEN`. */
  listen(host: string, port: number): Promise<number>
  stats(): HttpServerStats
  /** Counts work that must finish before the server may close; call the result once when it has. */
  track(): () => void
  /** Stops accepting, sends `Connection: close`, closes when idle or at the deadline; resolves what was cut. */
  drain(opts: DrainOptions): Promise<{ cut: number }>
  /** Closes every listener and connection now. */
  destroy(): void
}

const STATUS_LINES = new Map<number, string>()

/** `200` → `'200 OK'`: uWS wants the reason phrase. */
export function statusLine(status: number): string {
  let line = STATUS_LINES.get(status)
  if (line === undefined) STATUS_LINES.set(status, (line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`))
  return line
}

/** Writes a whole JSON response; call it synchronously in the handler, or later through {@link answerLater}. */
export function sendJson(res: HttpResponse, status: number, body: unknown): void {
  res.writeStatus(statusLine(status)).writeHeader('Content-Type', 'application/json').end(JSON.stringify(body))
}

/**
 * The one way to answer a request from outside its handler's own call
 * (after an `await`, in a timer, on a reply from another process): runs
 * `write` inside `res.cork` while the response is open, and skips it once
 * the client has gone (hung up, or pipelined a request that made uWS close
 * the connection) or the response has finished. Touching such a response
 * throws, and inside a promise callback that throw ends the process.
 * Returns whether `write` ran.
 *
 * Responses of a {@link createHttpServer} app also guard `res.cork` and
 * `res.close` the same way, so older code that corks directly is just as
 * safe; new code says what it means with this.
 */
export function answerLater(res: HttpResponse, write: () => void): boolean {
  if (!(res as Tracked)[OPEN]) return false
  res.cork(write)
  return true
}

/**
 * Wraps `app`'s route methods. Every handler gets an `onAborted` before it
 * runs (so a handler that awaits cannot abort the process), `res.cork` and
 * `res.close` that do nothing once the client has gone or the response has
 * finished (see {@link answerLater}), and thrown or rejected errors become a
 * 500 plus one `onError` call.
 */
export function createHttpServer(app: TemplatedApp, onError: (err: unknown) => void): HttpServer {
  let inflight = 0
  let tracked = 0
  let requests = 0
  let draining = false
  let lastActivity = Date.now()
  let listenSocket: us_listen_socket | null = null
  let drained: Promise<{ cut: number }> | null = null
  const latency = new StatusLatency()

  /** The response is over: `answered` when it was sent (not left by its client, nor upgraded). */
  function finish(res: Tracked, answered: boolean): void {
    if (!res[OPEN]) return
    res[OPEN] = false
    inflight--
    if (answered) latency.recordClass(res[STATUS]!, performance.now() - res[START]!)
    lastActivity = Date.now()
  }

  // The native methods, captured from the first response (they live on the shared native prototype).
  // The replacements below are shared functions installed as own properties: no per-request closures
  // but the abort one.
  type Upgrade = (...args: unknown[]) => void
  let base: Pick<HttpResponse, 'end' | 'endWithoutBody' | 'write' | 'tryEnd' | 'onAborted' | 'cork' | 'close' | 'writeStatus'> & { upgrade: Upgrade }
  function writeStatus(this: Tracked, status: Parameters<HttpResponse['writeStatus']>[0]): HttpResponse {
    // The class is the first digit: no parse per answer ('200 OK' → 1).
    if (typeof status === 'string') this[STATUS] = status.charCodeAt(0) - 49
    return base.writeStatus.call(this, status)
  }
  function end(this: Tracked, body?: Parameters<HttpResponse['end']>[0], close?: boolean): HttpResponse {
    try {
      return base.end.call(this, body, close || draining)
    } finally {
      finish(this, true)
    }
  }
  function endWithoutBody(this: Tracked, length?: number, close?: boolean): HttpResponse {
    try {
      // This uWS mishandles its own length argument: undefined is sent as Content-Length: 2^63, and a length
      // above 0 leaves the response unfinished, which stalls the kept-alive connection. So the length goes
      // out as a header of ours and uWS is never given one. The client is told to close while draining
      // (uWS cannot be asked to here); the drain closes what stays idle.
      if (length !== undefined) this.writeHeader('Content-Length', String(length))
      if (close || draining) this.writeHeader('Connection', 'close')
      return base.endWithoutBody.call(this)
    } finally {
      finish(this, true)
    }
  }
  // Streamed bodies cannot ask uWS to close, so while draining the header tells the client not to reuse the socket.
  function startBody(res: Tracked): void {
    if (res[BODY]) return
    res[BODY] = true
    if (draining) res.writeHeader('Connection', 'close')
  }
  function write(this: Tracked, chunk: Parameters<HttpResponse['write']>[0]): boolean {
    startBody(this)
    return base.write.call(this, chunk)
  }
  function tryEnd(this: Tracked, chunk: Parameters<HttpResponse['tryEnd']>[0], total: number): [boolean, boolean] {
    startBody(this)
    const result = base.tryEnd.call(this, chunk, total)
    if (result[1]) finish(this, true)
    return result
  }
  // A response whose client left (or that already finished) must not be touched: uWS throws, and a throw in a
  // promise callback ends the child. Answers written later all go through cork, so a closed response skips them.
  function cork(this: Tracked, write: () => void): HttpResponse {
    if (this[OPEN]) base.cork.call(this, write)
    return this
  }
  function close(this: Tracked): HttpResponse {
    if (this[OPEN]) base.close.call(this)
    return this
  }
  function onAborted(this: Tracked, handler: () => void): HttpResponse {
    this[ABORT] = handler
    return this
  }
  function upgrade(this: Tracked, ...args: unknown[]): void {
    try {
      base.upgrade.apply(this, args)
    } finally {
      finish(this, false)
    }
  }

  function fail(res: Tracked, err: unknown): void {
    onError(err)
    if (!res[OPEN]) return
    // A half-sent body cannot turn into an error answer: cut the connection so the client sees it failed.
    if (res[BODY]) return void res.close()
    const wire = toWire(err)
    const status = ERRORS[wire.code as ErrorCode]?.status ?? 500
    try {
      // Unexpected errors answer with the code only: their text may carry internals.
      res.cork(() => sendJson(res, status, wire.code === 'ESPRA_ERR_INTERNAL' ? { code: wire.code, message: 'internal error' } : wire))
    } catch {
      res.close()
    }
  }

  function wrap(handler: Handler): Handler {
    return (raw, req) => {
      const res = raw as Tracked
      base ??= {
        end: res.end, endWithoutBody: res.endWithoutBody, write: res.write, tryEnd: res.tryEnd,
        onAborted: res.onAborted, cork: res.cork, close: res.close, writeStatus: res.writeStatus, upgrade: (res as unknown as { upgrade: Upgrade }).upgrade,
      }
      inflight++
      requests++
      lastActivity = Date.now()
      res[OPEN] = true
      res[START] = performance.now()
      res[STATUS] = 1
      res.end = end
      res.writeStatus = writeStatus
      res.endWithoutBody = endWithoutBody
      res.write = write
      res.tryEnd = tryEnd
      res.cork = cork
      res.close = close
      ;(res as unknown as { upgrade: typeof upgrade }).upgrade = upgrade
      base.onAborted.call(res, () => {
        finish(res, false)
        res[ABORT]?.()
      })
      res.onAborted = onAborted
      try {
        const result = handler(res, req)
        if (result !== undefined) result.then(undefined, (err: unknown) => fail(res, err))
      } catch (err) {
        fail(res, err)
      }
    }
  }

  for (const method of ROUTE_METHODS) {
    const register = (app[method] as Register).bind(app)
    ;(app as unknown as Record<string, Register>)[method] = (pattern, handler) => register(pattern, wrap(handler))
  }

  return {
    app,
    get draining() {
      return draining
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(createError('ESPRA_ERR_NODE_LISTEN', { option: '--port', host, port, reason: 'in use by a process without SO_REUSEPORT, or not permitted' }))
            return
          }
          listenSocket = socket
          resolve(uws.us_socket_local_port(socket as never))
        })
      })
    },
    stats: () => ({ inflight, tracked, requests, latency }),
    track() {
      tracked++
      let done = false
      return () => {
        if (done) return
        done = true
        tracked--
        lastActivity = Date.now()
      }
    },
    drain({ timeoutMs, quietMs = 500 }) {
      if (drained) return drained
      draining = true
      // Close the listener first: clients told `Connection: close` then reconnect to the other listeners only.
      if (listenSocket) uws.us_listen_socket_close(listenSocket)
      listenSocket = null
      lastActivity = Date.now()
      const deadline = lastActivity + timeoutMs
      drained = new Promise((resolve) => {
        const check = (): void => {
          const now = Date.now()
          const idle = inflight === 0 && tracked === 0 && now - lastActivity >= Math.min(quietMs, timeoutMs)
          if (!idle && now < deadline) return
          clearInterval(timer)
          const cut = inflight + tracked
          app.close()
          resolve({ cut })
        }
        const timer = setInterval(check, 25)
        check()
      })
      return drained
    },
    destroy() {
      draining = true
      listenSocket = null
      app.close()
    },
  }
}
