/**
 * Messages between an app child's main thread (HTTP, queue, pool) and its
 * worker threads (the application). One request at a time per worker; ids
 * match answers to requests and platform calls (`ctx.publish`, `ctx.tables`)
 * to their results. Requests and whole responses that fit a slot go
 * through each worker's two slot rings instead (roles/app/slot-codec.ts
 * has their layout); everything else is a message.
 */
import type { MintOptions } from '../../lib/live/token.js'
import type { LeasedTask } from '../../lib/tasks/task.js'

/** What `handle(request)` receives, minus what the worker derives (searchParams, text(), json()). */
export interface WireRequest {
  readonly method: string
  /** Path and query as sent, e.g. `/a/b?x=1`. */
  readonly url: string
  readonly path: string
  /** The query string without `?` ('' when none). */
  readonly query: string
  /** Lower-case names; repeated headers joined with `, ` (`cookie` with `; `). */
  readonly headers: Record<string, string>
  readonly body: Uint8Array
  /** The client's IP address: the TCP peer, or behind a balancer in --trusted-proxies the client its X-Forwarded-For names. */
  readonly address: string
}

/** The config the application sees (`ctx.config`): nothing secret. */
export interface AppVisibleConfig {
  readonly nodeId: string
  readonly region: string
  readonly role: 'app'
  readonly build: string
  readonly threads: number
  readonly requestTimeout: number
  readonly maxBody: number
  /** `--app-settings`: what the operator set for the application. */
  readonly settings: Readonly<Record<string, unknown>>
}

/** Given to each worker at start (`workerData`). */
export interface WorkerStart {
  readonly entry: string
  readonly build: string
  readonly config: AppVisibleConfig
  readonly logLevel: string
  readonly child: number
  /** Derived once from the cluster secret for `ctx.mintToken`; the secret itself stays in the main thread. */
  readonly tokenKey: Uint8Array
  /** Int32 cells shared with the main thread, one per request the worker may hold: a request runs only once claimed from its cell (see `req`). */
  readonly gate: SharedArrayBuffer
  /** The slot rings (roles/app/slot-ring.ts) of requests to the worker and of whole responses from it, slots of `slotSize` bytes. */
  readonly requests: SharedArrayBuffer
  readonly responses: SharedArrayBuffer
  readonly slotSize: number
}

/** The `ctx` methods a worker asks its main thread to run. */
export const PLATFORM_OPS = ['publish', 'uploadToken', 'tables.get', 'tables.set', 'tables.delete', 'tables.list', 'enqueue', 'sendMail'] as const
export type PlatformOp = (typeof PLATFORM_OPS)[number]

/** A leased task on its way to `handleTask` (the payload still msgpack-encoded; the worker decodes it). */
export type WireTask = LeasedTask

/** How a task run ended, as the pool reports it to the task consumer. */
export type TaskOutcome = { readonly result: 'done' } | { readonly result: 'failed'; readonly error: string } | { readonly result: 'released' }

export type ToWorker =
  /**
   * A request that does not fit a slot of the request ring (or came when
   * the ring was full). Requests run in `seq` order (counted per worker,
   * ring and messages alike), each after the ones before it; the worker
   * first claims it by swapping `id` in gate cell `cell` for 0, and drops
   * it when that fails (the main thread took it back).
   */
  | { t: 'req'; seq: number; id: number; cell: number; req: WireRequest }
  | { t: 'result'; id: number; ok: true; value: unknown }
  | { t: 'result'; id: number; ok: false; code: string; message: string }
  | { t: 'destroy' }
  /** Run `handleTask`; answered by `task-done`. */
  | { t: 'task'; task: WireTask }
  /** Flow control for a streamed response: send the next chunk (`stop`: the client is gone, end the stream). */
  | { t: 'pull'; id: number; stop: boolean }

export type FromWorker =
  /** The platform side of the worker is up; the build's own code (module, then init) starts now. */
  | { t: 'loading' }
  /** `tasks`: the module exports handleTask. */
  | { t: 'ready'; tasks: boolean }
  | { t: 'init-failed'; message: string; stack?: string }
  /** A whole response that does not fit a slot of the response ring (or came when the ring was full). */
  | { t: 'res'; id: number; status: number; headers: [string, string][]; body: Uint8Array }
  /** A streamed response: head, chunks, end; after each chunk the worker waits for a `pull`. */
  | { t: 'head'; id: number; status: number; headers: [string, string][] }
  | { t: 'chunk'; id: number; data: Uint8Array }
  | { t: 'end'; id: number }
  /** The handler threw (or a stream failed); `errorId` is in the worker's log line too. */
  | { t: 'error'; id: number; errorId: string; code: string; message: string }
  /** A `ctx` method that needs the main thread (network, seed): answered by a `result` with the same id. */
  | { t: 'call'; id: number; op: PlatformOp; args: unknown[] }
  | { t: 'destroyed' }
  | { t: 'task-done'; id: string; ok: true }
  | { t: 'task-done'; id: string; ok: false; error: string }

export type { MintOptions }
