/**
 * The task queue in PostgreSQL (`--tasks postgres`, the default with a
 * postgres `--datastore`): hosted by the seed like the embedded queue, so
 * app and mail nodes reach it over the meta port (`tasks.*`, `mailq.*`) and
 * only seeds hold database connections. Same semantics as the other
 * backends (lib/tasks/queue.ts); the shared contract runs against all three.
 *
 * One table, `espra_tasks`, for every queue (`queue` column: `tasks`,
 * `mailq`); a row's `state` is `r` (ready once `run_at` has passed: ready or
 * delayed), `l` (leased until `lease_until`) or `x` (dead letter). Every
 * step is one statement:
 * - lease: `SELECT … ORDER BY run_at, id LIMIT n FOR UPDATE SKIP LOCKED`
 *   inside an UPDATE, so concurrent leasers never wait on each other nor
 *   take the same row; oldest first, a released or expired task first of all
 *   (its `run_at` is set to 0);
 * - extend and settle quote the attempt and need a live lease
 *   (`lease_until` still ahead), so a late answer is "lost", never applied;
 * - done deletes the row (the table holds only unfinished work and dead
 *   letters: docs/postgres.md, "Keeping the task table small").
 *
 * Expired leases are swept every {@link SWEEP_MS} (and before counts), so
 * an orphaned task is ready again at most that long after its lease ended.
 *
 * Waiting leases are woken by this queue's own writes that make a task
 * ready (enqueue, release, retry, sweep); with `notify`, those writes also
 * send a NOTIFY that other seeds on the database hand to
 * {@link PostgresTaskQueue.wakeWaiters} (seed/stores.ts), so a lease waiting
 * on one seed hears of a push on another at once; otherwise waiting leases
 * look again every {@link POLL_MS}.
 * Times are the database server's clock, so seeds' clocks do not matter.
 *
 * This file holds the queue itself: its state (open or closed, the enqueues
 * batched for the next statement, the sweep timer, the NOTIFY after a
 * write). The statements are lib/tasks/queue-postgres-statements.ts; the
 * waiting leases are lib/tasks/queue-postgres-waiters.ts.
 *
 * With an op id (lib/storage/op-id.ts), `enqueue`, `lease`, `settle` and
 * `retry` commit with its record (lib/storage/postgres-ops.ts): sent again,
 * to this seed or another, they apply once and answer the same. Enqueue,
 * lease and settle stay one statement each with their op ids: the claim,
 * the op and its record are CTEs of that statement (no transaction of
 * several round trips); only a repeat reads the record in a second one.
 * A lease that found nothing is not remembered (it changed nothing: its
 * claim is deleted); a waiting lease whose caller went away keeps what it
 * took under its op id (the caller's resend gets it) instead of giving it
 * back. `retry` (an admin's, rare) keeps its transaction.
 */
import { createError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { Postgres } from '../storage/postgres.js'
import { MAX_BATCH, type LeaseOptions, type TaskQueue } from './queue.js'
import {
  countTasks, deadLetterPage, deleteDeadLetter, extendLeases, insertTasks, leaseReady, releaseLeases, retryDead, settleLeases, sweepExpired,
  type PendingInsert,
} from './queue-postgres-statements.js'
import { createLeaseWaiters } from './queue-postgres-waiters.js'
import type { DeadPage, LeasedTask, LeaseRef, NewTask, Settlement, TaskCounts } from './task.js'

export const SWEEP_MS = 200
/** A waiting lease looks again this often when nothing woke it (tasks that came due; another seed's enqueue without NOTIFY). */
const POLL_MS = 250
/** The channel seeds NOTIFY on when a task became ready; the payload is `<queue> <instance>`. */
export const TASKS_CHANNEL = 'espra_tasks'

export interface PostgresTaskQueueOptions {
  readonly db: Postgres
  /** Which queue of the table: `tasks` (the app's) or `mailq` (outbound mail). */
  readonly queue: string
  readonly log: Logger
  /**
   * Send `NOTIFY espra_tasks, '<queue> <instance>'` after a write that made a
   * task ready, so the other seeds' waiting leases look at once. `instance`
   * tells this process's own notifications apart (it already woke its own).
   */
  readonly notifyAs?: string
  /** How often a waiting lease looks again unwoken; {@link POLL_MS} by default (tests stretch it to see what wakes a lease). */
  readonly pollMs?: number
}

export interface PostgresTaskQueue extends TaskQueue {
  /** `opId`: applied once per op id (the module's comment). */
  enqueue(task: NewTask, opId?: string): Promise<string>
  /** `alive`: whether the caller (a meta peer) is still there when a waiting lease is served. */
  lease(options: LeaseOptions, alive?: () => boolean, opId?: string): Promise<LeasedTask[]>
  settle(results: readonly Settlement[], opId?: string): Promise<string[]>
  retry(id: string, opId?: string): Promise<boolean>
  /** Another seed made a task of this queue ready (its NOTIFY): waiting leases look now. */
  wakeWaiters(): void
}

export function createPostgresTaskQueue({ db, queue, log, notifyAs, pollMs = POLL_MS }: PostgresTaskQueueOptions): PostgresTaskQueue {
  let closed = false
  const waiters = createLeaseWaiters({
    take: (options, opId) => leaseReady(db, queue, options, opId),
    release: (refs) => releaseLeases(db, queue, refs),
    pollMs,
  })

  const checkOpen = (): void => {
    if (closed) throw createError('ESPRA_ERR_TASK_UNAVAILABLE', { reason: 'closed' })
  }

  /**
   * A write of this queue made a task ready: wake the waiting leases here
   * and, with `notifyAs`, tell the other seeds. One NOTIFY per turn of the
   * event loop at most (a burst of enqueues sends one), after the write has
   * committed, never awaited by the writer; a lost one costs a waiting lease
   * at most {@link POLL_MS}.
   */
  let notifyQueued = false
  function readied(): void {
    waiters.wake()
    if (notifyAs === undefined || notifyQueued || closed) return
    notifyQueued = true
    setImmediate(() => {
      notifyQueued = false
      db.query('SELECT pg_notify($1, $2)', [TASKS_CHANNEL, `${queue} ${notifyAs}`]).catch(() => {})
    })
  }

  /** Expired leases: ready again at the front, or dead after their last attempt. */
  async function sweep(): Promise<number> {
    const rowCount = await sweepExpired(db, queue)
    if (rowCount > 0) readied()
    return rowCount
  }
  let sweepFailed = false
  let sweeping = false
  const sweeper = setInterval(() => {
    // One sweep at a time: with the database away a connection attempt may take its whole timeout.
    if (closed || sweeping) return
    sweeping = true
    sweep().then(() => (sweepFailed = false), (err: unknown) => {
      // The pool logs the outage once; say here only that leases are not being swept.
      if (!sweepFailed) log.debug({ err: (err as Error).message, queue }, 'task queue: expired leases not swept')
      sweepFailed = true
    }).finally(() => (sweeping = false))
  }, SWEEP_MS)
  sweeper.unref()

  /**
   * Enqueues that arrive in one turn of the event loop go in one statement
   * (one commit, lib/tasks/queue-postgres-statements.ts `insertTasks`): each
   * caller's promise still resolves only once its row is durable.
   */
  const inserts: (PendingInsert & { resolve: (id: string) => void; reject: (err: unknown) => void })[] = []
  function insertBatch(): void {
    const batch = inserts.splice(0, MAX_BATCH)
    if (inserts.length > 0) setImmediate(insertBatch)
    if (batch.length === 0) return
    insertTasks(db, queue, batch).then(({ ids, readies }) => {
      batch.forEach((b, i) => b.resolve(ids[i]!))
      if (readies) readied()
    }, (err: unknown) => {
      for (const b of batch) b.reject(err)
    })
  }

  return {
    backend: 'postgres',
    wakeWaiters: () => waiters.wake(),
    enqueue(task: NewTask, opId?: string) {
      checkOpen()
      return new Promise<string>((resolve, reject) => {
        inserts.push({ task, opId, resolve, reject })
        if (inserts.length === 1) setImmediate(insertBatch)
      })
    },
    async lease(options: LeaseOptions, alive: () => boolean = () => true, opId?: string) {
      checkOpen()
      const got = await leaseReady(db, queue, options, opId)
      if (got.length > 0 || !options.waitMs) return got
      return waiters.wait(options, alive, opId)
    },
    async extend(leases: readonly LeaseRef[], leaseMs: number) {
      checkOpen()
      return extendLeases(db, queue, leases, leaseMs)
    },
    async settle(results: readonly Settlement[], opId?: string) {
      checkOpen()
      const { lost, readies } = await settleLeases(db, queue, results, opId)
      if (readies) readied()
      return lost
    },
    async counts(): Promise<TaskCounts> {
      checkOpen()
      await sweep()
      return countTasks(db, queue)
    },
    async deadLetters(options: { after?: string; limit?: number } = {}): Promise<DeadPage> {
      checkOpen()
      return deadLetterPage(db, queue, options)
    },
    async retry(id: string, opId?: string) {
      checkOpen()
      const retried = await retryDead(db, queue, id, opId)
      if (retried) readied()
      return retried
    },
    async deleteDead(id: string) {
      checkOpen()
      return deleteDeadLetter(db, queue, id)
    },
    async close() {
      if (closed) return
      closed = true
      clearInterval(sweeper)
      waiters.close()
    },
  }
}
