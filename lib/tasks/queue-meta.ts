/**
 * The seed's task queue over the meta port: how app nodes, the admin CLI
 * and benches reach the queue the seed hosts (ops `tasks.*`,
 * docs/meta-protocol.md), embedded or on PostgreSQL: `backend` says which
 * once a `counts` answer told (`seed` before). `link` is anything that sends a meta request: a
 * meta client, or an app child's relay through its parent's seed link. A
 * seed out of reach is `ESPRA_ERR_TASK_UNAVAILABLE`.
 *
 * Riding over a failover: only the ops whose repetition changes nothing are
 * sent again when the link drops or reaches a seed that does not lead
 * (`ESPRA_ERR_META_CLOSED`, `ESPRA_ERR_SEED_NOT_LEADER`), with the datastore
 * client's backoff (100 ms to 1 s) for at most `retryWindowMs`: `extend`
 * (a renewal sets the same lease end again, and answers the same "lost";
 * for at most its `leaseMs`, past which the lease is gone anyway), `counts`
 * and `dead` (reads). `enqueue` (would run a task twice), `lease` (would
 * hold tasks nobody runs until their lease ends), `settle` and `retry` (a
 * second one answers "lost" or "not found" for what the first did) fail at
 * once, as before.
 */
import { EspraError } from '../core/errors.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../storage/datastore-client.js'
import type { LeaseOptions, TaskQueue } from './queue.js'
import type { DeadPage, LeasedTask, TaskCounts } from './task.js'

export interface MetaRequester {
  request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R>
}

/** Codes that mean "the seed is not there right now", not "the request was wrong". */
const UNREACHABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_META_TIMEOUT', 'ESPRA_ERR_SEED_UNREACHABLE', 'ESPRA_ERR_IPC_TIMEOUT'])
/** A waiting lease is answered by the seed within its waitMs; allow this much on top. */
const WAIT_SLACK_MS = 5000
/** Failures after which the op was not applied by a seed that is still there: the next link may take it. */
const RETRYABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_SEED_NOT_LEADER'])
const RETRY_FIRST_MS = 100
const RETRY_MAX_MS = 1000

export interface MetaTaskQueueOptions {
  /** How long `extend`, `counts` and `dead` are sent again after the link dropped ({@link DATASTORE_RETRY_WINDOW_MS}); 0 fails at once. */
  readonly retryWindowMs?: number
}

/** `prefix`: `tasks` (the app's task queue) or `mailq` (the outbound mail queue the seed keeps beside it). */
export function createMetaTaskQueue(link: MetaRequester, prefix = 'tasks', options: MetaTaskQueueOptions = {}): TaskQueue {
  const windowMs = options.retryWindowMs ?? DATASTORE_RETRY_WINDOW_MS
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
  /** Sends an op whose repetition changes nothing until it is answered, fails otherwise than by the link, or `within` ms passed. */
  async function repeatable<R>(op: string, body: unknown, within: number): Promise<R> {
    const started = Date.now()
    for (let attempt = 1; ; attempt++) {
      try {
        return await link.request<R>(op, body)
      } catch (err) {
        const { code, details } = err as EspraError
        const stopped = (details as { stopped?: unknown } | undefined)?.stopped === true
        const left = started + within - Date.now()
        if (!RETRYABLE.has(code) || stopped || closed || left <= 0) throw err
        const step = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(attempt - 1, 10))
        await pause(Math.min(left, step / 2 + Math.random() * (step / 2)))
        if (closed) throw err
      }
    }
  }
  // The seed's own backend (embedded or postgres), as its last counts answer said; a seed that does not say hosts the embedded one.
  let backend = 'seed'
  /** `repeatWithin` > 0: an op safe to send again, for at most that long. */
  async function call<R>(op: string, body: unknown, timeoutMs?: number, repeatWithin = 0): Promise<R> {
    try {
      return await (repeatWithin > 0 ? repeatable<R>(op, body, repeatWithin) : link.request<R>(op, body, timeoutMs))
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      if (UNREACHABLE.has(code)) throw new EspraError('ESPRA_ERR_TASK_UNAVAILABLE', `task queue (seed) unreachable: ${(err as Error).message}`, { cause: code })
      throw err
    }
  }
  return {
    get backend() {
      return backend
    },
    async enqueue(task) {
      return (await call<{ id: string }>(`${prefix}.enqueue`, task)).id
    },
    async lease(options: LeaseOptions): Promise<LeasedTask[]> {
      const { max, leaseMs, waitMs = 0 } = options
      return (await call<{ tasks: LeasedTask[] }>(`${prefix}.lease`, { max, leaseMs, waitMs }, waitMs + WAIT_SLACK_MS)).tasks
    },
    async extend(leases, leaseMs) {
      return (await call<{ lost: string[] }>(`${prefix}.extend`, { leases, leaseMs }, undefined, Math.min(windowMs, leaseMs))).lost
    },
    async settle(results) {
      return (await call<{ lost: string[] }>(`${prefix}.settle`, { results })).lost
    },
    async counts() {
      const { backend: said, ...counts } = await call<TaskCounts & { backend?: unknown }>(`${prefix}.counts`, {}, undefined, windowMs)
      backend = typeof said === 'string' && /^[a-z]{1,20}$/.test(said) ? said : 'embedded'
      return counts
    },
    deadLetters: (options = {}) => call<DeadPage>(`${prefix}.dead`, options, undefined, windowMs),
    async retry(id) {
      try {
        await call(`${prefix}.retry`, { id })
        return true
      } catch (err) {
        if ((err as { code?: string }).code === 'ESPRA_ERR_TASK_NOT_FOUND') return false
        throw err
      }
    },
    async close() {
      closed = true
      for (const wake of [...waiting]) wake()
    },
  }
}
