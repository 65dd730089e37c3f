/**
 * The seed's task queue over the meta port: how app nodes, the admin CLI
 * and benches reach the queue the seed hosts (ops `tasks.*`,
 * docs/meta-protocol.md), embedded or on PostgreSQL: `backend` says which
 * once a `counts` answer told (`seed` before). `link` is anything that sends a meta request: a
 * meta client, or an app child's relay through its parent's seed link. A
 * seed out of reach is `ESPRA_ERR_TASK_UNAVAILABLE`.
 *
 * Riding over a failover: every op is sent again when the link drops or
 * reaches a seed that does not lead (`ESPRA_ERR_META_CLOSED`,
 * `ESPRA_ERR_SEED_NOT_LEADER`), with the datastore client's backoff (100 ms
 * to 1 s) for at most `retryWindowMs`. `extend` (a renewal sets the same
 * lease end again, and answers the same "lost"; for at most its `leaseMs`,
 * past which the lease is gone anyway), `counts` and `dead` (reads) as they
 * are. `enqueue`, `lease`, `settle` and `retry` would change something if
 * applied twice (a task run twice, tasks held that nobody runs, a second
 * answer "lost" or "not found" for what the first did): each call draws an
 * op id once (lib/storage/op-id.ts) and every attempt carries it, so the
 * seed applies it once and a repeat gets the first answer. A lease that
 * waits is sent again for its `waitMs` on top of the window. `deleteDead`
 * takes no op id: sent again, it changes nothing; but a resend whose first
 * attempt did delete (its answer lost to the failover) answers false, so
 * false means "no such dead letter now", not "nothing was deleted".
 */
import { createError } from '../core/errors.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../storage/datastore-client.js'
import { newOpId } from '../storage/op-id.js'
import { createResender, type MetaRequester } from '../transport/resend.js'
import type { LeaseOptions, TaskQueue } from './queue.js'
import type { DeadPage, LeasedTask, TaskCounts } from './task.js'

export type { MetaRequester }

/** Codes that mean "the seed is not there right now", not "the request was wrong". */
const UNREACHABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_META_TIMEOUT', 'ESPRA_ERR_SEED_UNREACHABLE', 'ESPRA_ERR_IPC_TIMEOUT'])
/** A waiting lease is answered by the seed within its waitMs; allow this much on top. */
const WAIT_SLACK_MS = 5000

export interface MetaTaskQueueOptions {
  /** How long an op is sent again after the link dropped ({@link DATASTORE_RETRY_WINDOW_MS}); 0 fails at once. */
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
      return await (repeatWithin > 0 ? resender.send<R>(op, body, repeatWithin, timeoutMs) : link.request<R>(op, body, timeoutMs))
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
      return (await call<{ id: string }>(`${prefix}.enqueue`, { ...task, opId: newOpId() }, undefined, windowMs)).id
    },
    async lease(options: LeaseOptions): Promise<LeasedTask[]> {
      const { max, leaseMs, waitMs = 0 } = options
      const body = { max, leaseMs, waitMs, opId: newOpId() }
      return (await call<{ tasks: LeasedTask[] }>(`${prefix}.lease`, body, waitMs + WAIT_SLACK_MS, windowMs > 0 ? windowMs + waitMs : 0)).tasks
    },
    async extend(leases, leaseMs) {
      return (await call<{ lost: string[] }>(`${prefix}.extend`, { leases, leaseMs }, undefined, Math.min(windowMs, leaseMs))).lost
    },
    async settle(results) {
      return (await call<{ lost: string[] }>(`${prefix}.settle`, { results, opId: newOpId() }, undefined, windowMs)).lost
    },
    async counts() {
      const { backend: said, ...counts } = await call<TaskCounts & { backend?: unknown }>(`${prefix}.counts`, {}, undefined, windowMs)
      backend = typeof said === 'string' && /^[a-z]{1,20}$/.test(said) ? said : 'embedded'
      return counts
    },
    deadLetters: (options = {}) => call<DeadPage>(`${prefix}.dead`, options, undefined, windowMs),
    async retry(id) {
      try {
        await call(`${prefix}.retry`, { id, opId: newOpId() }, undefined, windowMs)
        return true
      } catch (err) {
        if ((err as { code?: string }).code === 'ESPRA_ERR_TASK_NOT_FOUND') return false
        throw err
      }
    },
    async deleteDead(id) {
      return (await call<{ deleted: boolean }>(`${prefix}.deleteDead`, { id }, undefined, windowMs)).deleted === true
    },
    async close() {
      resender.close()
    },
  }
}
