/**
 * An app worker thread: loads one build's server module, runs `init(ctx)`,
 * then answers one request at a time with `handle(request)` until told to
 * retire (`destroy()`, then exit). See docs/app-api.md for the contract.
 */
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { parentPort, threadId, workerData } from 'node:worker_threads'
import type { LogLevel } from '../../lib/core/config.js'
import { toWire } from '../../lib/core/errors.js'
import { createLogger } from '../../lib/core/log.js'
import { mintToken } from '../../lib/live/token.js'
import type { UploadMintOptions } from '../../lib/uploads/token.js'
import { decodePayload, newTask } from '../../lib/tasks/task.js'
import { MAIL_TASK_NAME } from '../../lib/mail/inbound.js'
import { ACCEPT_RECIPIENT_PATH, type RecipientAnswer } from '../../lib/mail/inbound-recipient.js'
import { checkOutMessage } from '../../lib/mail/outbound.js'
import { MAIL_EVENT_TASK_NAME } from '../../lib/mail/outbound-events.js'
import { createAppCache } from './cache.js'
import { ClaimGate } from './claim-gate.js'
import { decodeRequest, encodeResponse, type SlotRequest } from './slot-codec.js'
import { SlotRing } from './slot-ring.js'
import { WakeBatch } from './wake-batch.js'
import type { FromWorker, PlatformOp, ToWorker, WireRequest, WireTask, WorkerStart } from './protocol.js'

const start = workerData as WorkerStart
const port = parentPort!
const log = createLogger(start.logLevel as LogLevel, { role: 'app', node: start.config.nodeId, child: start.child, thread: threadId, build: start.build })
const tokenKey = Buffer.from(start.tokenKey)
const gate = new ClaimGate(start.gate)
const requestRing = new SlotRing(start.requests, start.slotSize)
const responseRing = new SlotRing(start.responses, start.slotSize)
/** The main thread is woken once for the answers of one turn (a batch of requests run back to back). */
const wakes = new WakeBatch()
const encoder = new TextEncoder()
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Field values: visible ASCII, spaces and tabs, obs-text; never CR, LF or NUL (no header injection).
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

interface AppModule {
  init?(ctx: unknown): unknown
  handle?(request: unknown): unknown
  handleTask?(task: unknown): unknown
  handleMail?(message: unknown): unknown
  acceptRecipient?(address: string): unknown
  handleMailEvent?(event: unknown): unknown
  destroy?(): unknown
}

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer)
}

/** The pending `pull` of the stream in progress (one request at a time, so at most one). */
let pulled: ((stop: boolean) => void) | null = null

let calls = 0
const pendingCalls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()

/** Runs a platform call on the main thread (which holds the network links). */
function call<R>(op: PlatformOp, ...args: unknown[]): Promise<R> {
  const id = ++calls
  return new Promise((resolve, reject) => {
    pendingCalls.set(id, { resolve: resolve as (v: unknown) => void, reject })
    try {
      post({ t: 'call', id, op, args })
    } catch (err) {
      // Not structured-cloneable (a function, a class instance with private state, ...).
      pendingCalls.delete(id)
      reject(Object.assign(new Error(`${op}: arguments cannot be sent: ${(err as Error).message}`), { code: 'ESPRA_ERR_APP_ARGUMENT' }))
    }
  })
}

const ctx = Object.freeze({
  config: start.config,
  log,
  cache: createAppCache(),
  publish: (channel: string, data: unknown, options?: { id?: string }) => call<{ seq: number; ts: number }>('publish', channel, data, options),
  tables: Object.freeze({
    get: (table: string, key: string) => call<unknown>('tables.get', table, key),
    set: (table: string, key: string, value: unknown, ttlMs?: number) => call<void>('tables.set', table, key, value, ttlMs),
    delete: (table: string, key: string) => call<boolean>('tables.delete', table, key),
    list: (table: string, options?: { prefix?: string; after?: string; limit?: number }) => call<unknown>('tables.list', table, options),
  }),
  mintToken: (opts: Parameters<typeof mintToken>[1]) => mintToken(tokenKey, opts),
  /** Checked and encoded here (a bad name, payload or option rejects with ESPRA_ERR_TASK_INVALID naming it); resolves with the task id once durable. */
  enqueue(name: string, payload?: unknown, options?: { delay?: number; attempts?: number }): Promise<string> {
    let task
    try {
      task = newTask(name, payload, options)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    return call<string>('enqueue', task)
  },
  mintUploadToken: (opts: UploadMintOptions) => call<string>('uploadToken', opts),
  /** Checked here first (header injection, bad addresses: a coded error at once); resolves with the message id once durable. */
  sendMail(message: unknown): Promise<string> {
    try {
      checkOutMessage(message)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    return call<string>('sendMail', message)
  },
})

class ResponseError extends Error {
  readonly code = 'ESPRA_ERR_APP_RESPONSE'
}

function toBytes(body: unknown): Uint8Array | null {
  if (body === undefined || body === null) return new Uint8Array(0)
  if (typeof body === 'string') return encoder.encode(body)
  if (body instanceof Uint8Array) return body
  if (body instanceof ArrayBuffer) return new Uint8Array(body)
  return null
}

function headersOf(raw: unknown): [string, string][] {
  if (raw === undefined || raw === null) return []
  if (typeof raw !== 'object') throw new ResponseError('response headers must be an object')
  const out: [string, string][] = []
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      const text = typeof v === 'number' ? String(v) : v
      if (!HEADER_NAME.test(name) || typeof text !== 'string' || !HEADER_VALUE.test(text)) throw new ResponseError(`invalid response header ${JSON.stringify(name)}`)
      // The HTTP server owns framing.
      if (/^(content-length|transfer-encoding|connection)$/i.test(name)) continue
      out.push([name, text])
    }
  }
  return out
}

const decoder = new TextDecoder()

/**
 * What `handle` receives: the wire request's fields as they are (own,
 * enumerable, in this order), `searchParams` parsed on first use, `text()`
 * and `json()`. Written out rather than spread from `wire`: copying the
 * properties of an object of unknown shape was the worker's largest own
 * cost per request (docs/benchmarks.md, `bench/app-dispatch`).
 */
function requestOf(wire: WireRequest): unknown {
  let parsed: URLSearchParams | undefined
  return {
    method: wire.method,
    url: wire.url,
    path: wire.path,
    query: wire.query,
    headers: wire.headers,
    body: wire.body,
    address: wire.address,
    get searchParams() {
      return (parsed ??= new URLSearchParams(wire.query))
    },
    text: () => decoder.decode(wire.body),
    json: () => JSON.parse(decoder.decode(wire.body)) as unknown,
  }
}

/**
 * The mail node's question (the main thread checked its signature): the
 * build's `acceptRecipient(address)` answers true/false or
 * `{accept, reason}`; a build without it takes every recipient.
 */
async function acceptRecipient(app: AppModule, wire: WireRequest): Promise<RecipientAnswer> {
  const { address } = JSON.parse(decoder.decode(wire.body)) as { address: string }
  if (typeof app.acceptRecipient !== 'function') return { accept: true, reason: null, exported: false }
  const r = (await app.acceptRecipient(address)) as unknown
  if (typeof r === 'boolean') return { accept: r, reason: null, exported: true }
  if (r !== null && typeof r === 'object' && typeof (r as { accept?: unknown }).accept === 'boolean') {
    const reason = (r as { reason?: unknown }).reason
    return { accept: (r as { accept: boolean }).accept, reason: typeof reason === 'string' ? reason.replace(/[\r\n]+/g, ' ').slice(0, 200) : null, exported: true }
  }
  throw new ResponseError('acceptRecipient() must return true, false or {accept, reason}')
}

/** A whole response through the response ring: false when it does not fit a slot or the ring is full (send a message). */
function writeResponse(id: number, status: number, headers: [string, string][], body: Uint8Array): boolean {
  const buf = responseRing.free()
  const length = buf === null ? -1 : encodeResponse(buf, { id, status, headers, body })
  if (length < 0) return false
  if (responseRing.publish(length)) wakes.add(responseRing)
  return true
}

async function answer(app: AppModule, id: number, wire0: WireRequest): Promise<void> {
  let started = false
  try {
    const raw = wire0.path === ACCEPT_RECIPIENT_PATH
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(await acceptRecipient(app, wire0)) }
      : await app.handle!(requestOf(wire0))
    const res = (typeof raw === 'string' ? { body: raw } : raw) as { status?: unknown; headers?: unknown; body?: unknown } | null
    if (res === null || typeof res !== 'object') throw new ResponseError('handle() must return a response object (or a string)')
    const status = res.status ?? 200
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) throw new ResponseError(`invalid response status ${String(status)}`)
    const headers = headersOf(res.headers)
    const bytes = toBytes(res.body)
    if (bytes !== null) {
      if (writeResponse(id, status, headers, bytes)) return
      // Copy what may be a view of a larger or shared buffer; transfer the copy.
      const body = bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && typeof res.body === 'string' ? bytes : bytes.slice()
      return post({ t: 'res', id, status, headers, body }, [body.buffer as ArrayBuffer])
    }
    const iterable = res.body as AsyncIterable<unknown>
    if (typeof iterable[Symbol.asyncIterator] !== 'function') throw new ResponseError('response body must be a string, bytes or an async iterable')
    post({ t: 'head', id, status, headers })
    started = true
    for await (const chunk of iterable) {
      const data = toBytes(chunk)
      if (data === null) throw new ResponseError('streamed chunks must be strings or bytes')
      if (data.length === 0) continue
      const copy = data.slice()
      // Back-pressure: the next chunk is produced only once the client took this one (or went away).
      const next = new Promise<boolean>((resolve) => (pulled = resolve))
      post({ t: 'chunk', id, data: copy }, [copy.buffer as ArrayBuffer])
      if (await next) break
    }
    post({ t: 'end', id })
  } catch (err) {
    const errorId = randomBytes(8).toString('hex')
    const wire = toWire(err)
    const thrown = (err as { code?: unknown } | null)?.code
    // A dependency the platform needs being down (ctx.enqueue with Redis away, the seed's PostgreSQL away) is a 503 in our words, not the app's 500.
    const code = wire.code === 'ESPRA_ERR_APP_RESPONSE' || thrown === 'ESPRA_ERR_APP_RESPONSE' ? 'ESPRA_ERR_APP_RESPONSE'
      : thrown === 'ESPRA_ERR_TASK_UNAVAILABLE' || thrown === 'ESPRA_ERR_DATASTORE_UNAVAILABLE' ? thrown
      : 'ESPRA_ERR_APP_HANDLER'
    log.error({ err, errorId, method: wire0.method, path: wire0.path, streaming: started }, `app handler failed (error id ${errorId})`)
    post({ t: 'error', id, errorId, code, message: (err as Error)?.message ?? String(err) })
  }
}

/** One task through `handleTask`; a throw (or rejection) is a failed attempt, retried by the queue. */
async function runTask(app: AppModule, wire: WireTask): Promise<void> {
  try {
    const task = { id: wire.id, name: wire.name, payload: decodePayload(wire.payload), attempt: wire.attempt, attempts: wire.attempts, enqueuedAt: wire.enqueuedAt }
    // The reserved `espra.mail` tasks carry an inbound message (roles/app/mail-handoff.ts) for handleMail; a missing handler is a failed attempt, retried.
    // Outbound mail events (lib/mail/outbound-events.ts) for the optional handleMailEvent: a build without it is done with them.
    if (wire.name === MAIL_EVENT_TASK_NAME) {
      if (typeof app.handleMailEvent === 'function') await app.handleMailEvent(task.payload)
      return post({ t: 'task-done', id: wire.id, ok: true })
    }
    const mail = wire.name === MAIL_TASK_NAME
    const handler = mail ? app.handleMail : app.handleTask
    if (typeof handler !== 'function') throw new Error(`the build exports no ${mail ? 'handleMail(message)' : 'handleTask(task)'} function`)
    await (mail ? app.handleMail!(task.payload) : app.handleTask!(task))
    post({ t: 'task-done', id: wire.id, ok: true })
  } catch (err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    log.warn({ err, task: wire.id, name: wire.name, attempt: wire.attempt, attempts: wire.attempts }, `app task ${wire.id} (${wire.name}) failed on attempt ${wire.attempt} of ${wire.attempts}`)
    post({ t: 'task-done', id: wire.id, ok: false, error: message })
  }
}

/** Requests received and not started, by `seq` (from the ring or as messages): the main thread hands a few ahead while this worker is busy. */
const waiting = new Map<number, SlotRequest>()
/** The `seq` of the request to run next. */
let nextSeq = 1
let serving = false

function readRequests(): void {
  for (let buf = requestRing.read(); buf !== null; buf = requestRing.read()) {
    const r = decodeRequest(buf)
    requestRing.consume()
    waiting.set(r.seq, r)
  }
}

/**
 * Runs the waiting requests one at a time in `seq` order, each once claimed
 * (one the main thread took back is dropped); then sleeps until the main
 * thread writes the next into the ring (one sent as a message wakes it too).
 */
async function serve(app: AppModule): Promise<void> {
  serving = true
  for (;;) {
    readRequests()
    const r = waiting.get(nextSeq)
    if (r === undefined) break
    waiting.delete(nextSeq)
    nextSeq = (nextSeq + 1) >>> 0
    if (gate.claim(r.cell, r.id)) await answer(app, r.id, r.req)
  }
  serving = false
  const wait = requestRing.sleep()
  if (wait === null) return serve(app)
  void wait.then(() => {
    if (!serving) void serve(app)
  })
}

async function main(): Promise<void> {
  let app: AppModule
  // --init-timeout counts from here: what follows is the build's own code, which may never return.
  post({ t: 'loading' })
  try {
    app = (await import(pathToFileURL(start.entry).href)) as AppModule
    if (typeof app.handle !== 'function') throw new Error(`${start.entry} exports no handle(request) function`)
    await app.init?.(ctx)
  } catch (err) {
    log.error({ err }, 'app build failed to start in a worker')
    post({ t: 'init-failed', message: (err as Error)?.message ?? String(err), stack: (err as Error)?.stack })
    return
  }
  port.on('message', (msg: ToWorker) => {
    if (msg.t === 'req') {
      waiting.set(msg.seq, msg)
      if (!serving) void serve(app)
    }
    else if (msg.t === 'task') void runTask(app, msg.task)
    else if (msg.t === 'pull') {
      const resolve = pulled
      pulled = null
      resolve?.(msg.stop)
    }
    else if (msg.t === 'result') {
      const p = pendingCalls.get(msg.id)
      pendingCalls.delete(msg.id)
      if (p === undefined) return
      if (msg.ok) p.resolve(msg.value)
      else p.reject(Object.assign(new Error(msg.message), { code: msg.code }))
    } else if (msg.t === 'destroy') {
      void (async () => {
        try {
          await app.destroy?.()
        } catch (err) {
          log.warn({ err }, 'app destroy() threw')
        }
        post({ t: 'destroyed' })
        port.close()
      })()
    }
  })
  void serve(app)
  post({ t: 'ready', tasks: typeof app.handleTask === 'function' || typeof app.handleMail === 'function' || typeof app.handleMailEvent === 'function' })
}

void main()
