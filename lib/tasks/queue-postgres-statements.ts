/**
 * The statements of the task queue in PostgreSQL (lib/tasks/queue-postgres.ts,
 * whose top comment says what each step does and why it is one statement):
 * each function is one step on the `espra_tasks` table of one `queue`, with
 * its op-id claim and record where it takes one. They hold no state; the
 * queue decides when to run them and whom a write that made a task ready
 * wakes (each write says whether it did).
 */
import { createError } from '../core/errors.js'
import { NOW_MS } from '../storage/postgres-clock.js'
import { OP_ID_TTL_MS } from '../storage/op-id.js'
import { answerKey, applyOnce, readOpRecord, recordedAnswers } from '../storage/postgres-ops.js'
import type { Postgres } from '../storage/postgres.js'
import { DEFAULT_DEAD_LIMIT, type LeaseOptions } from './queue.js'
import type { DeadPage, LeasedTask, LeaseRef, NewTask, Settlement, TaskCounts } from './task.js'

const LEASE_EXPIRED = 'lease expired: the node running it stopped, or lost the queue, before it finished'

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

/** Expired leases: ready again at the front, or dead after their last attempt. Answers how many (some: tasks became ready). */
export async function sweepExpired(db: Postgres, queue: string): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE espra_tasks SET
       state = CASE WHEN attempt >= attempts THEN 'x' ELSE 'r' END,
       failed_at = CASE WHEN attempt >= attempts THEN ${NOW_MS} END,
       run_at = 0, lease_until = NULL, error = $2
     WHERE queue = $1 AND state = 'l' AND lease_until <= ${NOW_MS}`,
    [queue, LEASE_EXPIRED],
  )
  return rowCount
}

/** An enqueue waiting for its batch's statement. */
export interface PendingInsert {
  readonly task: NewTask
  readonly opId: string | undefined
}

/**
 * One batch of enqueues in one statement (lib/tasks/queue-postgres.ts says
 * how batches form). The statement draws the ids, claims the batch's op ids
 * with their answers (`ON CONFLICT DO NOTHING`: a concurrent claim of the
 * same id is waited for), and inserts the tasks whose op id it claimed or
 * that have none. Only when some op id was already claimed does a second
 * statement read what it answered. An op id twice in one batch is sent once
 * and both callers get its answer. `readies`: a task is ready now.
 */
export async function insertTasks(db: Postgres, queue: string, batch: readonly PendingInsert[]): Promise<{ ids: string[]; readies: boolean }> {
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
export async function leaseReady(db: Postgres, queue: string, options: LeaseOptions, opId: string | undefined): Promise<LeasedTask[]> {
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
    const held = await heldUnder(db, queue, opId!)
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
async function heldUnder(db: Postgres, queue: string, opId: string): Promise<LeasedTask[] | null> {
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

/** Gives leased tasks back, ready at the front, the attempt not counted (a waiting lease whose caller went away). */
export async function releaseLeases(db: Postgres, queue: string, refs: readonly LeaseRef[]): Promise<void> {
  await db.query(
    `UPDATE espra_tasks t SET state = 'r', attempt = t.attempt - 1, run_at = 0, lease_until = NULL
     FROM unnest($2::bigint[], $3::int[]) AS r(id, attempt)
     WHERE t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l'`,
    [queue, ids(refs), attempts(refs)],
  )
}

/** Renews the leases still held; answers the ids whose lease was lost. */
export async function extendLeases(db: Postgres, queue: string, leases: readonly LeaseRef[], leaseMs: number): Promise<string[]> {
  if (leases.length === 0) return []
  const { rows } = await db.query<{ id: string }>(
    `UPDATE espra_tasks t SET lease_until = ${NOW_MS} + $4
     FROM unnest($2::bigint[], $3::int[]) AS r(id, attempt)
     WHERE t.queue = $1 AND t.id = r.id AND t.attempt = r.attempt AND t.state = 'l' AND t.lease_until > ${NOW_MS}
     RETURNING t.id`,
    [queue, ids(leases), attempts(leases), leaseMs],
  )
  return lostOf(leases, rows.map((r) => r.id))
}

/** Ends leases (done, released, failed) under an op id; answers the ids whose lease was lost and whether a task became ready now. */
export async function settleLeases(db: Postgres, queue: string, results: readonly Settlement[], opId: string | undefined): Promise<{ lost: string[]; readies: boolean }> {
  if (results.length === 0) return { lost: [], readies: false }
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
    if (rows[0]!.claimed) return { lost: lostOf(results, rows[0]!.ids), readies: released.length > 0 || failed.some((r) => r.retryInMs === 0) }
    const record = await readOpRecord(db, [op, `${queue}.settle`], opId!)
    if (record === null) continue
    // Recorded by a seed of the previous version: its msgpack answer. Otherwise no answer row means nothing was lost.
    if (record.answer !== undefined) return { lost: record.answer as string[], readies: false }
    return { lost: record.ids === null ? [] : lostOf(results, record.ids as string[]), readies: false }
  }
  throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the task queue in PostgreSQL', problem: `op id ${opId} neither claimed nor recorded` })
}

/** How many tasks are in each state (expired leases not swept yet count as leased). */
export async function countTasks(db: Postgres, queue: string): Promise<TaskCounts> {
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
}

/** One page of dead letters, by id, after `after`. */
export async function deadLetterPage(db: Postgres, queue: string, options: { after?: string; limit?: number }): Promise<DeadPage> {
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
}

/** Makes a dead letter ready again with its attempts reset; false when no such dead letter. Applied once per op id. */
export async function retryDead(db: Postgres, queue: string, id: string, opId: string | undefined): Promise<boolean> {
  return applyOnce(db, `${queue}.retry`, opId, async (q) => (await q.query(
    `UPDATE espra_tasks SET state = 'r', attempt = 0, failed_at = NULL, run_at = ${NOW_MS} WHERE queue = $1 AND id = $2 AND state = 'x'`,
    [queue, id.slice(1)],
  )).rowCount > 0)
}

/** Deletes a dead letter; false when no such dead letter (a ready or leased task is never deleted). One statement, no op id: a repeat finds nothing and answers false. */
export async function deleteDeadLetter(db: Postgres, queue: string, id: string): Promise<boolean> {
  return (await db.query(`DELETE FROM espra_tasks WHERE queue = $1 AND id = $2 AND state = 'x'`, [queue, id.slice(1)])).rowCount > 0
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
