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
 * With an op id (lib/storage/op-id.ts), `enqueue`, `lease`, `settle` and
 * `retry` commit with its record (lib/storage/postgres-ops.ts): sent again,
 * to this seed or another, they apply once and answer the same. Enqueues of
 * one batch claim their op ids in one statement; a lease that found nothing
 * is not remembered (it changed nothing); a waiting lease whose caller went
 * away keeps what it took under its op id (the caller's resend gets it)
 * instead of giving it back.
 */
import { createError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { NOW_MS } from '../storage/postgres-clock.js'
import { applyOnce, claimOps, encodeAnswer, recordedAnswers } from '../storage/postgres-ops.js'
import type { PgQuery, Postgres } from '../storage/postgres.js'
import { DEFAULT_DEAD_LIMIT, MAX_BATCH, type LeaseOptions, type TaskQueue } from './queue.js'
import type { DeadPage, LeasedTask, LeaseRef, NewTask, Settlement, TaskCounts } from './task.js'

export const SWEEP_MS = 200
/** A waiting lease looks again this often when nothing woke it (tasks that came due; another seed's enqueue without NOTIFY). */
const POLL_MS = 250
/** The channel seeds NOTIFY on when a task became ready; the payload is `<queue> <instance>`. */
export const TASKS_CHANNEL = 'espra_tasks'
const LEASE_EXPIRED = 'lease expired: the node running it stopped, or lost the queue, before it finished'

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

interface Waiter {
  readonly options: LeaseOptions
  readonly alive: () => boolean
  readonly until: number
  readonly resolve: (tasks: LeasedTask[]) => void
  readonly reject: (err: unknown) => void
  readonly opId: string | undefined
}

/** Thrown inside a lease's transaction that found nothing: rolls its op id back (nothing to remember). */
class NothingLeased extends Error {}

interface TaskRow extends Record<string, unknown> {
  id: string
  name: string
  payload: Buffer
  attempt: number
  attempts: number
  enqueued_at: string
  run_at: string
}

const ids = (refs: readonly { id: string }[]): string[] => refs.map((r) => r.id.slice(1))
const attempts = (refs: readonly { attempt: number }[]): number[] => refs.map((r) => r.attempt)

export function createPostgresTaskQueue({ db, queue, log, notifyAs, pollMs = POLL_MS }: PostgresTaskQueueOptions): PostgresTaskQueue {
  let closed = false
  const waiters: Waiter[] = []
  let pumping = false
  let woken = false
  let pollTimer: NodeJS.Timeout | null = null

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
    wake()
    if (notifyAs === undefined || notifyQueued || closed) return
    notifyQueued = true
    setImmediate(() => {
      notifyQueued = false
      db.query('SELECT pg_notify($1, $2)', [TASKS_CHANNEL, `${queue} ${notifyAs}`]).catch(() => {})
    })
  }

  /** Expired leases: ready again at the front, or dead after their last attempt. */
  async function sweep(): Promise<number> {
    const { rowCount } = await db.query(
      `UPDATE espra_tasks SET
         state = CASE WHEN attempt >= attempts THEN 'x' ELSE 'r' END,
         failed_at = CASE WHEN attempt >= attempts THEN ${NOW_MS} END,
         run_at = 0, lease_until = NULL, error = $2
       WHERE queue = $1 AND state = 'l' AND lease_until <= ${NOW_MS}`,
      [queue, LEASE_EXPIRED],
    )
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
   * Enqueues that arrive in one turn of the event loop go in one multi-row
   * INSERT (one commit): each caller's promise still resolves only once its
   * row is durable. Ids are drawn in the callers' order (volatile target-list
   * expressions run after ORDER BY), so the ids, sorted, map back to them.
   */
  const inserts: { task: NewTask; opId: string | undefined; resolve: (id: string) => void; reject: (err: unknown) => void }[] = []
  function insertBatch(): void {
    const batch = inserts.splice(0, MAX_BATCH)
    if (inserts.length > 0) setImmediate(insertBatch)
    if (batch.length === 0) return
    const run = batch.some((b) => b.opId !== undefined) ? db.transaction((tx) => insertOnce(tx, batch)) : insertPlain(batch.map((b) => b.task))
    run.then(({ ids, readies }) => {
      batch.forEach((b, i) => b.resolve(ids[i]!))
      if (readies) readied()
    }, (err: unknown) => {
      for (const b of batch) b.reject(err)
    })
  }
  async function insertPlain(tasks: readonly NewTask[]): Promise<{ ids: string[]; readies: boolean }> {
    const { rows } = await db.query<{ id: string }>(
      `INSERT INTO espra_tasks (id, queue, state, name, payload, attempts, enqueued_at, run_at) OVERRIDING SYSTEM VALUE
       SELECT nextval(pg_get_serial_sequence('espra_tasks', 'id')), $1, 'r', r.name, r.payload, r.attempts, ${NOW_MS}, ${NOW_MS} + r.delay
       FROM unnest($2::text[], $3::bytea[], $4::int[], $5::bigint[]) WITH ORDINALITY AS r(name, payload, attempts, delay, ord)
       ORDER BY r.ord
       RETURNING id`,
      [queue, tasks.map((t) => t.name), tasks.map(bytesOf), tasks.map((t) => t.attempts), tasks.map((t) => t.delay)],
    )
    const ids = rows.map((r) => BigInt(r.id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    return { ids: ids.map((id) => `t${id}`), readies: tasks.some((t) => t.delay === 0) }
  }
  /**
   * A batch with op ids, in one transaction: ids drawn first, so each op id
   * is claimed with its answer in one statement for the whole batch; only the
   * tasks whose op id was new (or that have none) are inserted; the others
   * answer the id recorded for them.
   */
  async function insertOnce(tx: PgQuery, batch: readonly { task: NewTask; opId: string | undefined }[]): Promise<{ ids: string[]; readies: boolean }> {
    const drawn = (await tx.query<{ id: string }>(`SELECT nextval(pg_get_serial_sequence('espra_tasks', 'id')) AS id FROM generate_series(1, $1)`, [batch.length]))
      .rows.map((r) => BigInt(r.id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const first = new Map<string, number>()
    batch.forEach((b, i) => b.opId !== undefined && !first.has(b.opId) && first.set(b.opId, i))
    const op = `${queue}.enqueue`
    const opIds = [...first.keys()]
    const claimed = await claimOps(tx, op, opIds, opIds.map((id) => encodeAnswer(`t${drawn[first.get(id)!]}`)))
    const fresh = batch.flatMap(({ opId }, i) => (opId === undefined || (claimed.has(opId) && first.get(opId) === i) ? [i] : []))
    const tasks = fresh.map((i) => batch[i]!.task)
    if (tasks.length > 0) {
      await tx.query(
        `INSERT INTO espra_tasks (id, queue, state, name, payload, attempts, enqueued_at, run_at) OVERRIDING SYSTEM VALUE
         SELECT r.id, $1, 'r', r.name, r.payload, r.attempts, ${NOW_MS}, ${NOW_MS} + r.delay
         FROM unnest($2::bigint[], $3::text[], $4::bytea[], $5::int[], $6::bigint[]) AS r(id, name, payload, attempts, delay)`,
        [queue, fresh.map((i) => drawn[i]!.toString()), tasks.map((t) => t.name), tasks.map(bytesOf), tasks.map((t) => t.attempts), tasks.map((t) => t.delay)],
      )
    }
    const earlier = await recordedAnswers<string>(tx, op, opIds.filter((id) => !claimed.has(id)))
    const ids = batch.map((b, i) => {
      if (b.opId === undefined) return `t${drawn[i]}`
      if (claimed.has(b.opId)) return `t${drawn[first.get(b.opId)!]}`
      const id = earlier.get(b.opId)
      if (id === undefined) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the task queue in PostgreSQL', problem: `op id ${b.opId} neither claimed nor recorded` })
      return id
    })
    return { ids, readies: tasks.some((t) => t.delay === 0) }
  }

  /** `q`: the pool, or the transaction of a lease with an op id (then what does not fit goes back in it too). */
  async function take(options: LeaseOptions, q: PgQuery = db): Promise<LeasedTask[]> {
    const { rows } = await q.query<TaskRow>(
      `UPDATE espra_tasks t SET state = 'l', attempt = t.attempt + 1, lease_until = ${NOW_MS} + $3
       FROM (SELECT id FROM espra_tasks WHERE queue = $1 AND state = 'r' AND run_at <= ${NOW_MS}
             ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) picked
       WHERE t.id = picked.id
       RETURNING t.id, t.name, t.payload, t.attempt, t.attempts, t.enqueued_at, t.run_at`,
      [queue, options.max, options.leaseMs],
    )
    // RETURNING has no order: put them back in queue order (run_at is the value before the update).
    rows.sort((a, b) => Number(a.run_at) - Number(b.run_at) || Number(a.id) - Number(b.id))
    const out: LeasedTask[] = []
    const over: TaskRow[] = []
    let bytes = 0
    for (const r of rows) {
      if (options.maxBytes !== undefined && out.length > 0 && (over.length > 0 || bytes + r.payload.length > options.maxBytes)) {
        over.push(r)
        continue
      }
      bytes += r.payload.length
      out.push({
        id: `t${r.id}`, name: r.name, payload: new Uint8Array(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength),
        attempt: r.attempt, attempts: r.attempts, enqueuedAt: Number(r.enqueued_at),
      })
    }
    // More than fits one answer frame: give the rest back untouched, at the front.
    if (over.length > 0) await release(over.map((r) => ({ id: `t${r.id}`, attempt: r.attempt })), q)
    return out
  }

  /** A take remembered under `opId` (none: as {@link take}); one that found nothing rolls back, as if not sent. */
  async function takeOnce(options: LeaseOptions, opId: string | undefined): Promise<LeasedTask[]> {
    if (opId === undefined) return take(options)
    try {
      return await applyOnce(db, `${queue}.lease`, opId, async (tx) => {
        const got = await take(options, tx)
        if (got.length === 0) throw new NothingLeased()
        return got
      })
    } catch (err) {
      if (err instanceof NothingLeased) return []
      throw err
    }
  }

  async function release(refs: readonly LeaseRef[], q: PgQuery = db): Promise<void> {
    await q.query(
      `UPDATE espra_tasks t SET state = 'r', attempt = t.attempt - 1, run_at = 0, lease_until = NULL
       FROM unnest($2::bigint[], $3::int[]) AS r(id, attempt)
       WHERE t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l'`,
      [queue, ids(refs), attempts(refs)],
    )
  }

  /** Serves waiting leases, oldest waiter first, while tasks come; then sleeps until woken or {@link POLL_MS}. */
  function wake(): void {
    woken = true
    if (waiters.length > 0 && !pumping) void pump()
  }
  async function pump(): Promise<void> {
    pumping = true
    if (pollTimer !== null) clearTimeout(pollTimer)
    pollTimer = null
    try {
      while (waiters.length > 0 && !closed) {
        woken = false
        const now = Date.now()
        for (let i = waiters.length - 1; i >= 0; i--) {
          const w = waiters[i]!
          if (w.until <= now || !w.alive()) {
            waiters.splice(i, 1)
            w.resolve([])
          }
        }
        const w = waiters[0]
        if (w === undefined) break
        let got: LeasedTask[]
        try {
          got = await takeOnce(w.options, w.opId)
        } catch (err) {
          waiters.shift()
          w.reject(err)
          continue
        }
        if (got.length > 0) {
          waiters.shift()
          // A caller that went away meanwhile would lose these: give them back, unless its op id keeps them for its resend.
          if (w.alive() || w.opId !== undefined) w.resolve(got)
          else {
            await release(got).catch(() => {})
            w.resolve([])
          }
          continue
        }
        if (woken) continue
        break
      }
    } finally {
      pumping = false
    }
    if (waiters.length > 0 && !closed) {
      const next = Math.min(pollMs, ...waiters.map((w) => w.until - Date.now()))
      pollTimer = setTimeout(() => void pump(), Math.max(1, next))
    }
  }

  return {
    backend: 'postgres',
    wakeWaiters: wake,
    enqueue(task: NewTask, opId?: string) {
      checkOpen()
      return new Promise<string>((resolve, reject) => {
        inserts.push({ task, opId, resolve, reject })
        if (inserts.length === 1) setImmediate(insertBatch)
      })
    },
    async lease(options: LeaseOptions, alive: () => boolean = () => true, opId?: string) {
      checkOpen()
      const got = await takeOnce(options, opId)
      if (got.length > 0 || !options.waitMs) return got
      return new Promise<LeasedTask[]>((resolve, reject) => {
        waiters.push({ options, alive, until: Date.now() + options.waitMs!, resolve, reject, opId })
        wake()
      })
    },
    async extend(leases: readonly LeaseRef[], leaseMs: number) {
      checkOpen()
      if (leases.length === 0) return []
      const { rows } = await db.query<{ id: string }>(
        `UPDATE espra_tasks t SET lease_until = ${NOW_MS} + $4
         FROM unnest($2::bigint[], $3::int[]) AS r(id, attempt)
         WHERE t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l' AND t.lease_until > ${NOW_MS}
         RETURNING t.id`,
        [queue, ids(leases), attempts(leases), leaseMs],
      )
      return lostOf(leases, rows)
    },
    async settle(results: readonly Settlement[], opId?: string) {
      checkOpen()
      if (results.length === 0) return []
      // One result per id (a repeat is lost, as the first one ends the lease); then one statement for all three kinds.
      const seen = new Set<string>()
      const first = results.filter((r) => !seen.has(r.id) && seen.add(r.id))
      const done = first.filter((r) => r.result === 'done')
      const released = first.filter((r) => r.result === 'released')
      const failed = first.filter((r): r is Extract<Settlement, { result: 'failed' }> => r.result === 'failed')
      const held = `t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l' AND t.lease_until > ${NOW_MS}`
      const lost = await applyOnce(db, `${queue}.settle`, opId, async (q) => lostOf(results, (await q.query<{ id: string }>(
        `WITH d AS (
           DELETE FROM espra_tasks t USING unnest($2::bigint[], $3::int[]) AS r(id, attempt) WHERE ${held} RETURNING t.id
         ), rl AS (
           UPDATE espra_tasks t SET state = 'r', attempt = t.attempt - 1, run_at = 0, lease_until = NULL
           FROM unnest($4::bigint[], $5::int[]) AS r(id, attempt) WHERE ${held} RETURNING t.id
         ), f AS (
           UPDATE espra_tasks t SET
             state = CASE WHEN t.attempt >= t.attempts THEN 'x' ELSE 'r' END,
             failed_at = CASE WHEN t.attempt >= t.attempts THEN ${NOW_MS} END,
             run_at = ${NOW_MS} + r.retry, lease_until = NULL, error = r.error
           FROM unnest($6::bigint[], $7::int[], $8::text[], $9::bigint[]) AS r(id, attempt, error, retry) WHERE ${held} RETURNING t.id
         )
         SELECT id FROM d UNION ALL SELECT id FROM rl UNION ALL SELECT id FROM f`,
        [queue, ids(done), attempts(done), ids(released), attempts(released), ids(failed), attempts(failed), failed.map((r) => r.error), failed.map((r) => r.retryInMs)],
      )).rows))
      if (released.length > 0 || failed.some((r) => r.retryInMs === 0)) readied()
      return lost
    },
    async counts(): Promise<TaskCounts> {
      checkOpen()
      await sweep()
      // One subquery per state, each on its partial index: only the rows of that state are read.
      const { rows } = await db.query<Record<keyof TaskCounts, string>>(
        `SELECT (SELECT count(*) FROM espra_tasks WHERE queue = $1 AND state = 'r' AND run_at <= ${NOW_MS}) AS ready,
                (SELECT count(*) FROM espra_tasks WHERE queue = $1 AND state = 'r' AND run_at > ${NOW_MS}) AS delayed,
                (SELECT count(*) FROM espra_tasks WHERE queue = $1 AND state = 'l') AS leased,
                (SELECT count(*) FROM espra_tasks WHERE queue = $1 AND state = 'x') AS dead`,
        [queue],
      )
      const r = rows[0]!
      return { ready: Number(r.ready), delayed: Number(r.delayed), leased: Number(r.leased), dead: Number(r.dead) }
    },
    async deadLetters(options: { after?: string; limit?: number } = {}): Promise<DeadPage> {
      checkOpen()
      const limit = options.limit ?? DEFAULT_DEAD_LIMIT
      const { rows } = await db.query<{ id: string; name: string; attempt: number; enqueued_at: string; failed_at: string | null; error: string | null; bytes: number }>(
        `SELECT id, name, attempt, enqueued_at, failed_at, error, length(payload) AS bytes FROM espra_tasks
         WHERE queue = $1 AND state = 'x' AND id > $2 ORDER BY id LIMIT $3`,
        [queue, options.after === undefined ? 0 : options.after.slice(1), limit + 1],
      )
      const tasks = rows.slice(0, limit).map((r) => ({
        id: `t${r.id}`, name: r.name, attempts: r.attempt, enqueuedAt: Number(r.enqueued_at),
        failedAt: Number(r.failed_at ?? 0), error: r.error ?? '', payloadBytes: r.bytes,
      }))
      return { tasks, next: rows.length > limit ? tasks.at(-1)!.id : null }
    },
    async retry(id: string, opId?: string) {
      checkOpen()
      const retried = await applyOnce(db, `${queue}.retry`, opId, async (q) => (await q.query(
        `UPDATE espra_tasks SET state = 'r', attempt = 0, failed_at = NULL, run_at = ${NOW_MS} WHERE queue = $1 AND id = $2 AND state = 'x'`,
        [queue, id.slice(1)],
      )).rowCount > 0)
      if (retried) readied()
      return retried
    },
    async close() {
      if (closed) return
      closed = true
      clearInterval(sweeper)
      if (pollTimer !== null) clearTimeout(pollTimer)
      for (const w of waiters.splice(0)) w.resolve([])
    },
  }
}

/** A task's payload as the driver's bytea parameter (no copy). */
const bytesOf = (t: NewTask): Buffer => Buffer.from(t.payload.buffer, t.payload.byteOffset, t.payload.byteLength)

/** The refs whose id did not come back from the statement: their lease was no longer held. */
function lostOf(refs: readonly { id: string }[], rows: readonly { id: string }[]): string[] {
  const kept = new Set(rows.map((r) => `t${r.id}`))
  const lost: string[] = []
  for (const r of refs) {
    if (kept.has(r.id)) kept.delete(r.id)
    else lost.push(r.id)
  }
  return lost
}
