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
import { NOW_MS } from '../storage/postgres-clock.js'
import { OP_ID_TTL_MS } from '../storage/op-id.js'
import { answerKey, applyOnce, readOpRecord, recordedAnswers } from '../storage/postgres-ops.js'
import type { Postgres } from '../storage/postgres.js'
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

/**
 * The op name a lease's or settle's record carries: its answer is task ids
 * (`ids`), not the msgpack answer a seed of the previous version would look
 * for, which therefore refuses such a repeat rather than answer it wrongly.
 */
const idsOp = (op: string): string => `${op}/ids`

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
   * Enqueues that arrive in one turn of the event loop go in one statement
   * (one commit): each caller's promise still resolves only once its row is
   * durable. The statement draws the ids, claims the batch's op ids with
   * their answers (`ON CONFLICT DO NOTHING`: a concurrent claim of the same
   * id is waited for), and inserts the tasks whose op id it claimed or that
   * have none. Only when some op id was already claimed does a second
   * statement read what it answered. An op id twice in one batch is sent
   * once and both callers get its answer.
   */
  const inserts: { task: NewTask; opId: string | undefined; resolve: (id: string) => void; reject: (err: unknown) => void }[] = []
  function insertBatch(): void {
    const batch = inserts.splice(0, MAX_BATCH)
    if (inserts.length > 0) setImmediate(insertBatch)
    if (batch.length === 0) return
    insertOnce(batch).then(({ ids, readies }) => {
      batch.forEach((b, i) => b.resolve(ids[i]!))
      if (readies) readied()
    }, (err: unknown) => {
      for (const b of batch) b.reject(err)
    })
  }
  async function insertOnce(batch: readonly { task: NewTask; opId: string | undefined }[]): Promise<{ ids: string[]; readies: boolean }> {
    // The first of each op id goes in; a later one with the same op id answers the first's id.
    const first = new Map<string, number>()
    const sent = batch.flatMap((b, i) => {
      if (b.opId === undefined) return [i]
      if (first.has(b.opId)) return []
      first.set(b.opId, i)
      return [i]
    })
    const tasks = sent.map((i) => batch[i]!.task)
    const op = `${queue}.enqueue`
    // The answer is recorded as the meta op answers it: msgpack of 't<id>' (a fixstr: 0xa0 + its length, at most 21 bytes).
    const { rows } = await db.query<{ id: string; fresh: boolean }>(
      `WITH input AS (
         SELECT nextval(pg_get_serial_sequence('espra_tasks', 'id')) AS id, r.op_id COLLATE "C" AS op_id, r.name, r.payload, r.attempts, r.delay, r.ord
         FROM unnest($2::text[], $3::text[], $4::bytea[], $5::int[], $6::bigint[]) WITH ORDINALITY AS r(op_id, name, payload, attempts, delay, ord)
         ORDER BY r.ord
       ), claimed AS (
         INSERT INTO espra_ops (op_id, op, answer, expires_at)
         SELECT op_id, $7, set_byte('\\x00'::bytea, 0, 160 + length('t' || id)) || convert_to('t' || id, 'UTF8'), ${NOW_MS} + $8
         FROM input WHERE op_id IS NOT NULL ORDER BY op_id
         ON CONFLICT (op_id) DO NOTHING RETURNING op_id
       ), inserted AS (
         INSERT INTO espra_tasks (id, queue, state, name, payload, attempts, enqueued_at, run_at) OVERRIDING SYSTEM VALUE
         SELECT id, $1, 'r', name, payload, attempts, ${NOW_MS}, ${NOW_MS} + delay FROM input
         WHERE op_id IS NULL OR op_id IN (SELECT op_id FROM claimed)
       )
       SELECT i.id, (i.op_id IS NULL OR c.op_id IS NOT NULL) AS fresh FROM input i LEFT JOIN claimed c ON c.op_id = i.op_id ORDER BY i.ord`,
      [queue, sent.map((i) => batch[i]!.opId ?? null), tasks.map((t) => t.name), tasks.map(bytesOf), tasks.map((t) => t.attempts), tasks.map((t) => t.delay), op, OP_ID_TTL_MS],
    )
    const answered = new Map<number, string>()
    const repeats: string[] = []
    rows.forEach((r, k) => {
      if (r.fresh) answered.set(sent[k]!, `t${r.id}`)
      else repeats.push(batch[sent[k]!]!.opId!)
    })
    const earlier = await recordedAnswers<string>(db, op, repeats)
    const ids = batch.map((b, i) => {
      const own = answered.get(b.opId === undefined ? i : first.get(b.opId)!)
      if (own !== undefined) return own
      const id = earlier.get(b.opId!)
      if (id === undefined) throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the task queue in PostgreSQL', problem: `op id ${b.opId} neither claimed nor recorded` })
      return id
    })
    return { ids, readies: rows.some((r, k) => r.fresh && tasks[k]!.delay === 0) }
  }

  /**
   * One statement: the op id is claimed first (none: no claim), the oldest
   * ready rows are chosen and locked (`FOR UPDATE SKIP LOCKED`), as many as
   * fit `maxBytes` (the first always) are leased, and the leased ids and
   * attempts are recorded beside the claim. A row chosen but over
   * `maxBytes` is left as it was (no release needed). Without the claim
   * (the op id was taken already) it leases nothing and the record is read:
   * {@link heldUnder}. A claim that leased nothing is deleted (nothing to
   * remember): a repeat leases what is ready by then.
   */
  async function take(options: LeaseOptions, opId: string | undefined): Promise<LeasedTask[]> {
    const op = idsOp(`${queue}.lease`)
    for (let round = 0; round < 2; round++) {
      const { rows } = await db.query<TaskRow & { claimed: boolean }>(
        `WITH claimed AS (
           INSERT INTO espra_ops (op_id, op, expires_at) SELECT $5, $6, ${NOW_MS} + $7 WHERE $5::text IS NOT NULL
           ON CONFLICT (op_id) DO NOTHING RETURNING op_id
         ), picked AS (
           SELECT id, run_at, length(payload) AS bytes FROM espra_tasks
           WHERE queue = $1 AND state = 'r' AND run_at <= ${NOW_MS} AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM claimed))
           ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
         ), fits AS (
           SELECT id FROM (SELECT id, row_number() OVER w AS n, sum(bytes) OVER w AS upto FROM picked WINDOW w AS (ORDER BY run_at, id)) p
           WHERE n = 1 OR $4::bigint IS NULL OR upto <= $4::bigint
         ), leased AS (
           UPDATE espra_tasks t SET state = 'l', attempt = t.attempt + 1, lease_until = ${NOW_MS} + $3
           FROM fits WHERE t.id = fits.id
           RETURNING t.id, t.name, t.payload, t.attempt, t.attempts, t.enqueued_at, t.run_at
         ), answer AS (
           INSERT INTO espra_ops (op_id, op, ids, expires_at)
           SELECT $8, $6, array_agg(ARRAY[id, attempt::bigint] ORDER BY run_at, id), ${NOW_MS} + $7 FROM leased
           HAVING $5::text IS NOT NULL AND count(*) > 0
         )
         SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM claimed) AS claimed, l.* FROM (SELECT 1) one LEFT JOIN leased l ON true`,
        [queue, options.max, options.leaseMs, options.maxBytes ?? null, opId ?? null, op, OP_ID_TTL_MS, opId === undefined ? null : answerKey(opId)],
      )
      const leased = rows.filter((r) => r.id !== null)
      if (rows[0]!.claimed) {
        if (leased.length === 0 && opId !== undefined) await db.query('DELETE FROM espra_ops WHERE op_id = $1', [opId])
        // RETURNING has no order: put them back in queue order (run_at is the value before the update).
        return leased.sort((a, b) => Number(a.run_at) - Number(b.run_at) || Number(a.id) - Number(b.id)).map(leasedTask)
      }
      const held = await heldUnder(opId!)
      if (held !== null) return held
    }
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the task queue in PostgreSQL', problem: `op id ${opId} neither claimed nor recorded` })
  }

  /**
   * What the lease with this op id answered (its ids and attempts as
   * recorded, each task's name and payload read again: they never change),
   * without the tasks finished since (their rows are gone: running them
   * again would be wrong). Null when nothing is recorded: it leased nothing
   * (its claim is being deleted) or its record expired.
   */
  async function heldUnder(opId: string): Promise<LeasedTask[] | null> {
    const record = await readOpRecord(db, [idsOp(`${queue}.lease`), `${queue}.lease`], opId)
    if (record === null) return null
    // Recorded by a seed of the previous version: its msgpack answer.
    if (record.answer !== undefined) return record.answer as LeasedTask[]
    if (record.ids === null) return []
    const recorded = (record.ids as string[][]).map(([id, attempt]) => ({ id: id!, attempt: Number(attempt) }))
    const { rows } = await db.query<TaskRow>(
      'SELECT id, name, payload, attempts, enqueued_at FROM espra_tasks WHERE id = ANY($1::bigint[])',
      [recorded.map((r) => r.id)],
    )
    const byId = new Map(rows.map((r) => [String(r.id), r]))
    return recorded.flatMap(({ id, attempt }) => {
      const row = byId.get(id)
      return row === undefined ? [] : [leasedTask({ ...row, attempt })]
    })
  }

  async function release(refs: readonly LeaseRef[]): Promise<void> {
    await db.query(
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
          got = await take(w.options, w.opId)
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
      const got = await take(options, opId)
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
      return lostOf(leases, rows.map((r) => r.id))
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
      // The op id is claimed first; the three kinds apply only if it claimed (a concurrent claim of the same id is waited for).
      // When something was lost, the ids that were settled are recorded beside the claim, so a repeat answers the same "lost".
      const claimed = '($10::text IS NULL OR EXISTS (SELECT 1 FROM claimed))'
      const held = `t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l' AND t.lease_until > ${NOW_MS} AND ${claimed}`
      const op = idsOp(`${queue}.settle`)
      for (let round = 0; round < 2; round++) {
        const { rows } = await db.query<{ claimed: boolean; ids: string[] }>(
          `WITH claimed AS (
             INSERT INTO espra_ops (op_id, op, expires_at) SELECT $10, $11, ${NOW_MS} + $12 WHERE $10::text IS NOT NULL
             ON CONFLICT (op_id) DO NOTHING RETURNING op_id
           ), d AS (
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
           ), settled AS (
             SELECT id FROM d UNION ALL SELECT id FROM rl UNION ALL SELECT id FROM f
           ), answer AS (
             INSERT INTO espra_ops (op_id, op, ids, expires_at)
             SELECT $13, $11, coalesce(array_agg(id), '{}'), ${NOW_MS} + $12 FROM settled
             HAVING $10::text IS NOT NULL AND EXISTS (SELECT 1 FROM claimed) AND count(*) < $14
           )
           SELECT ${claimed} AS claimed, ARRAY(SELECT id FROM settled) AS ids`,
          [queue, ids(done), attempts(done), ids(released), attempts(released), ids(failed), attempts(failed), failed.map((r) => r.error), failed.map((r) => r.retryInMs),
            opId ?? null, op, OP_ID_TTL_MS, opId === undefined ? null : answerKey(opId), results.length],
        )
        if (rows[0]!.claimed) {
          if (released.length > 0 || failed.some((r) => r.retryInMs === 0)) readied()
          return lostOf(results, rows[0]!.ids)
        }
        const record = await readOpRecord(db, [op, `${queue}.settle`], opId!)
        if (record === null) continue
        // Recorded by a seed of the previous version: its msgpack answer. Otherwise no answer row means nothing was lost.
        if (record.answer !== undefined) return record.answer as string[]
        return record.ids === null ? [] : lostOf(results, record.ids as string[])
      }
      throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the task queue in PostgreSQL', problem: `op id ${opId} neither claimed nor recorded` })
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
    // One statement, no op id: a repeat finds no dead letter and answers false.
    async deleteDead(id: string) {
      checkOpen()
      return (await db.query(`DELETE FROM espra_tasks WHERE queue = $1 AND id = $2 AND state = 'x'`, [queue, id.slice(1)])).rowCount > 0
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

/** A leased row as the queue answers it (the payload without a copy). */
const leasedTask = (r: Pick<TaskRow, 'id' | 'name' | 'payload' | 'attempt' | 'attempts' | 'enqueued_at'>): LeasedTask => ({
  id: `t${r.id}`, name: r.name, payload: new Uint8Array(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength),
  attempt: r.attempt, attempts: r.attempts, enqueuedAt: Number(r.enqueued_at),
})

/** A task's payload as the driver's bytea parameter (no copy). */
const bytesOf = (t: NewTask): Buffer => Buffer.from(t.payload.buffer, t.payload.byteOffset, t.payload.byteLength)

/** The refs whose id did not come back from the statement: their lease was no longer held. */
function lostOf(refs: readonly { id: string }[], settled: readonly (string | number)[]): string[] {
  const kept = new Set(settled.map((id) => `t${id}`))
  const lost: string[] = []
  for (const r of refs) {
    if (kept.has(r.id)) kept.delete(r.id)
    else lost.push(r.id)
  }
  return lost
}
