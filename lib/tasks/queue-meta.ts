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
import { createError } from '../core/errors.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../storage/datastore-client.js'
import { createResender, type MetaRequester } from '../transport/resend.js'
import type { LeaseOptions, TaskQueue } from './queue.js'
import type { DeadPage, LeasedTask, TaskCounts } from './task.js'

export type { MetaRequester }

/** Codes that mean "the seed is not there right now", not "the request was wrong". */
const UNREACHABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_META_TIMEOUT', 'ESPRA_ERR_SEED_UNREACHABLE', 'ESPRA_ERR_IPC_TIMEOUT'])
/** A waiting lease is answered by the seed within its waitMs; allow this much on top. */
const WAIT_SLACK_MS = 5000

export interface MetaTaskQueueOptions {
  /** How long `extend`, `counts` and `dead` are sent again after the link dropped ({@link DATASTORE_RETRY_WINDOW_MS}); 0 fails at once. */
  readonly retryWindowMs?: number
}

/** `prefix`: `tasks` (the app's task queue) or `mailq` (the outbound mail queue the seed keeps beside it). */
export function createMetaTaskQueue(link: MetaRequester, prefix = 'tasks', options: MetaTaskQueueOptions = {}): TaskQueue {
  const windowMs = options.retryWindowMs ?? DATASTORE_RETRY_WINDOW_MS
  const resender = createResender(link)
  // The seed's own backend (embedded or postgres), as its last counts answer said; a seed that does not say hosts the embedded one.
  let backend = 'seed'
  /** `repeatWithin` > 0: an op safe to send again, for at most that long. */
  async function call<R>(op: string, body: unknown, timeoutMs?: number, repeatWithin = 0): Promise<R> {
    try {
      return await (repeatWithin > 0 ? resender.send<R>(op, body, repeatWithin) : link.request<R>(op, body, timeoutMs))
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      if (UNREACHABLE.has(code)) throw createError('ESPRA_ERR_TASK_UNAVAILABLE', { reason: `cannot reach the seed (${(err as Error).message})`, cause: code })
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
      resender.close()
    },
  }
}
