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

/**
 * A tracked response's own state, in the one field a {@link createHttpServer}
 * app adds to each uWS response (no side map to clean up). One object of a
 * fixed shape: setting a dozen methods and fields on every response instead
 * cost map transitions per request on every role's hot path.
 */
const FLIGHT = Symbol('espra.flight')
/** Set on a uWS response prototype once its methods are replaced (SSL and plain apps have their own). */
const PATCHED = Symbol('espra.patched')

/** What the shared response methods need of the server a response belongs to (several can live in one process). */
interface Books {
  draining: boolean
  /** The response is over: `answered` when it was sent (not left by its client, nor upgraded). */
  finish(flight: Flight, answered: boolean): void
}

class Flight {
  open = true
  /** Status class of the answer: first digit of the status line minus 1 (0 for 1xx … 4 for 5xx); 1 (2xx) until written. */
  status = 1
  bodyStarted = false
  /** The handler's own `onAborted`, called after the server's bookkeeping. */
  onAborted: (() => void) | undefined = undefined
  /** `start`: performance.now() when the handler began. */
  constructor(readonly books: Books, readonly start: number) {}
}

interface Tracked extends HttpResponse {
  [FLIGHT]?: Flight
  [PATCHED]?: true
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
  const flight = (res as Tracked)[FLIGHT]
  if (flight === undefined || !flight.open) return false
  res.cork(write)
  return true
}

type Upgrade = (...args: unknown[]) => void

// Streamed bodies cannot ask uWS to close, so while draining the header tells the client not to reuse the socket.
function startBody(res: HttpResponse, flight: Flight): void {
  if (flight.bodyStarted) return
  flight.bodyStarted = true
  if (flight.books.draining) res.writeHeader('Connection', 'close')
}

/**
 * Replaces the methods of a uWS response prototype, once for all the
 * responses it makes (the methods are shared, the state is each response's
 * {@link Flight}). A response no tracked handler took (a WebSocket upgrade
 * handler, an app not made by {@link createHttpServer}) has no flight and
 * gets the native methods' behaviour.
 */
function patchResponses(proto: Tracked): void {
  const native = {
    end: proto.end, endWithoutBody: proto.endWithoutBody, write: proto.write, tryEnd: proto.tryEnd,
    onAborted: proto.onAborted, cork: proto.cork, close: proto.close, writeStatus: proto.writeStatus, upgrade: (proto as unknown as { upgrade: Upgrade }).upgrade,
  }
  proto.writeStatus = function writeStatus(this: Tracked, status) {
    // The class is the first digit: no parse per answer ('200 OK' → 1).
    const flight = this[FLIGHT]
    if (flight !== undefined && typeof status === 'string') flight.status = status.charCodeAt(0) - 49
    return native.writeStatus.call(this, status)
  }
  proto.end = function end(this: Tracked, body, close) {
    const flight = this[FLIGHT]
    if (flight === undefined) return native.end.call(this, body, close)
    try {
      return native.end.call(this, body, close || flight.books.draining)
    } finally {
      flight.books.finish(flight, true)
    }
  }
  proto.endWithoutBody = function endWithoutBody(this: Tracked, length, close) {
    const flight = this[FLIGHT]
    if (flight === undefined) return native.endWithoutBody.call(this, length, close)
    try {
      // This uWS mishandles its own length argument: undefined is sent as Content-Length: 2^63, and a length
      // above 0 leaves the response unfinished, which stalls the kept-alive connection. So the length goes
      // out as a header of ours and uWS is never given one. The client is told to close while draining
      // (uWS cannot be asked to here); the drain closes what stays idle.
      if (length !== undefined) this.writeHeader('Content-Length', String(length))
      if (close || flight.books.draining) this.writeHeader('Connection', 'close')
      return native.endWithoutBody.call(this)
    } finally {
      flight.books.finish(flight, true)
    }
  }
  proto.write = function write(this: Tracked, chunk) {
    const flight = this[FLIGHT]
    if (flight !== undefined) startBody(this, flight)
    return native.write.call(this, chunk)
  }
  proto.tryEnd = function tryEnd(this: Tracked, chunk, total) {
    const flight = this[FLIGHT]
    if (flight === undefined) return native.tryEnd.call(this, chunk, total)
    startBody(this, flight)
    const result = native.tryEnd.call(this, chunk, total)
    if (result[1]) flight.books.finish(flight, true)
    return result
  }
  // A response whose client left (or that already finished) must not be touched: uWS throws, and a throw in a
  // promise callback ends the child. Answers written later all go through cork, so a closed response skips them.
  proto.cork = function cork(this: Tracked, write) {
    const flight = this[FLIGHT]
    if (flight === undefined || flight.open) native.cork.call(this, write)
    return this
  }
  proto.close = function close(this: Tracked) {
    const flight = this[FLIGHT]
    if (flight === undefined || flight.open) native.close.call(this)
    return this
  }
  // The server's own abort handler is registered natively when the handler starts (see `wrap`); the handler's is kept and called after it.
  proto.onAborted = function onAborted(this: Tracked, handler) {
    const flight = this[FLIGHT]
    if (flight === undefined) return native.onAborted.call(this, handler)
    flight.onAborted = handler
    return this
  }
  ;(proto as unknown as { upgrade: Upgrade }).upgrade = function upgrade(this: Tracked, ...args: unknown[]) {
    const flight = this[FLIGHT]
    if (flight === undefined) return native.upgrade.apply(this, args)
    try {
      native.upgrade.apply(this, args)
    } finally {
      flight.books.finish(flight, false)
    }
  }
  proto[PATCHED] = true
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
  let lastActivity = Date.now()
  let listenSocket: us_listen_socket | null = null
  let drained: Promise<{ cut: number }> | null = null
  const latency = new StatusLatency()

  // A data field, not a getter: every answer reads it.
  const books: Books = {
    draining: false,
    finish(flight, answered) {
      if (!flight.open) return
      flight.open = false
      inflight--
      if (answered) latency.recordClass(flight.status, performance.now() - flight.start)
      lastActivity = Date.now()
    },
  }

  function fail(res: Tracked, err: unknown): void {
    onError(err)
    const flight = res[FLIGHT]!
    if (!flight.open) return
    // A half-sent body cannot turn into an error answer: cut the connection so the client sees it failed.
    if (flight.bodyStarted) return void res.close()
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
      if (res[PATCHED] !== true) patchResponses(Object.getPrototypeOf(res) as Tracked)
      inflight++
      requests++
      lastActivity = Date.now()
      const flight = new Flight(books, performance.now())
      // Registered before the flight is set, so this reaches uWS's own onAborted (later calls keep the handler's).
      res.onAborted(() => {
        books.finish(flight, false)
        flight.onAborted?.()
      })
      res[FLIGHT] = flight
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
      return books.draining
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
      books.draining = true
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
      books.draining = true
      listenSocket = null
      app.close()
    },
  }
}
