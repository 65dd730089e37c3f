/**
 * The durable task queue: one interface, two backends chosen by `--redis`.
 *
 * - embedded (default): hosted by the seed in LMDB (seed/tasks-embedded.ts);
 *   other processes reach it over the meta port (`tasks.*` ops) with
 *   {@link createMetaTaskQueue} (lib/tasks/queue-meta.ts).
 * - Redis (lib/tasks/queue-redis.ts): the reliable-queue pattern for
 *   clusters that outgrow one seed.
 *
 * Semantics, the same for both: a consumer takes tasks with a lease
 * (`lease`), keeps the lease alive while it holds them (`extend`), and ends
 * each lease with `settle` (done, failed, released). A lease that is neither
 * extended nor settled in time expires: the task is ready again and the lost
 * lease counts as an attempt. Delivery is therefore at least once. A task
 * whose last attempt failed (or expired) is a dead letter until retried
 * (`retry`) or deleted (`deleteDead`).
 */
import type { DeadPage, LeasedTask, LeaseRef, NewTask, Settlement, TaskCounts } from './task.js'

/** At most this many tasks per `lease`, refs per `extend` and results per `settle`. */
export const MAX_BATCH = 1000
export const MIN_LEASE_MS = 100
export const MAX_LEASE_MS = 3_600_000
/** The longest a `lease` call waits for a task to become ready. */
export const MAX_WAIT_MS = 30_000
export const DEFAULT_DEAD_LIMIT = 100

export interface LeaseOptions {
  /** At most this many tasks (1 to {@link MAX_BATCH}). */
  readonly max: number
  /** The lease length; `extend` renews it. */
  readonly leaseMs: number
  /** With nothing ready, wait up to this long for a task (0: answer at once). */
  readonly waitMs?: number
  /** Stop before the payloads pass this many bytes (at least one task is given); what fits a meta frame. */
  readonly maxBytes?: number
}

export interface TaskQueue {
  /** `embedded` or `redis`, for logs and `admin tasks`. */
  readonly backend: string
  /** Durable when the promise resolves; resolves with the task id. */
  enqueue(task: NewTask): Promise<string>
  /** Ready tasks, oldest first (possibly none). */
  lease(options: LeaseOptions): Promise<LeasedTask[]>
  /** Renews these leases; answers the ones no longer held (expired, or settled elsewhere). */
  extend(leases: readonly LeaseRef[], leaseMs: number): Promise<string[]>
  /** Ends these leases; answers the ids whose lease was no longer held (their results were ignored). */
  settle(results: readonly Settlement[]): Promise<string[]>
  counts(): Promise<TaskCounts>
  /** Dead letters in id order, with the last error of each. */
  deadLetters(options?: { after?: string; limit?: number }): Promise<DeadPage>
  /** Makes a dead letter ready again with its attempts restored; false when there is no such dead letter. */
  retry(id: string): Promise<boolean>
  /**
   * Deletes a dead letter (its record and payload); false when there is no
   * such dead letter (a ready, delayed or leased task is never deleted).
   * Idempotent by itself: a repeat answers false and changes nothing, so it
   * takes no op id.
   */
  deleteDead(id: string): Promise<boolean>
  close(): Promise<void>
}
