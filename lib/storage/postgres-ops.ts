/**
 * Ops applied once per op id in PostgreSQL (lib/storage/op-id.ts): the op
 * and the row `espra_ops (op_id, op, answer, expires_at)` that remembers it
 * commit in one transaction. The op id goes in first (`INSERT … ON CONFLICT
 * DO NOTHING`): a second transaction with the same id, on any seed of the
 * database, waits on the primary key until the first commits or rolls back;
 * then it either finds the row (and answers what the first answered,
 * applying nothing) or claims the id itself.
 *
 * The task queue's hot ops (enqueue, lease, settle) do the same in ONE
 * statement instead (lib/tasks/queue-postgres.ts): a first data-modifying
 * CTE claims the op id (`ON CONFLICT DO NOTHING`, which waits on a
 * concurrent claim as above), the op's own CTEs run only if it claimed, and
 * what the op did is recorded in the same statement, as task ids (`ids`),
 * on the claim row when it is known before (enqueue) or on a second row
 * keyed {@link answerKey} (lease, settle: a statement cannot update a row it
 * inserted). A statement that did not claim reads the record in a second
 * statement (its own snapshot predates the claim it waited on).
 */
import { Packr } from 'msgpackr'
import { createError } from '../core/errors.js'
import { OP_ID_TTL_MS } from './op-id.js'
import { NOW_MS } from './postgres-clock.js'
import type { PgQuery, Postgres } from './postgres.js'

// Plain msgpack maps (no records), as the meta port carries them.
const packr = new Packr({ useRecords: false })
const encodeAnswer = (answer: unknown): Buffer => packr.pack(answer)
const decodeAnswer = <A>(bytes: Buffer | null): A => (bytes === null ? undefined : packr.unpack(bytes)) as A
/** Deleted per statement by {@link removeExpiredOps}: short transactions, and the sweep yields between them. */
export const OPS_SWEEP_BATCH = 5000

/** Claims op ids in this transaction; answers the ones that were new (the rest are recorded by an earlier op, or being so). */
async function claimOps(tx: PgQuery, op: string, opIds: readonly string[], answers?: readonly Buffer[]): Promise<Set<string>> {
  const { rows } = await tx.query<{ op_id: string }>(
    `INSERT INTO espra_ops (op_id, op, answer, expires_at)
     SELECT o.id, $2, o.answer, ${NOW_MS} + $4 FROM unnest($1::text[], $3::bytea[]) AS o(id, answer) ORDER BY o.id
     ON CONFLICT (op_id) DO NOTHING RETURNING op_id`,
    [opIds, op, answers ?? opIds.map(() => null), OP_ID_TTL_MS],
  )
  return new Set(rows.map((r) => r.op_id))
}

/** The answers recorded for these op ids (of `op`); an id recorded for another op is refused. */
export async function recordedAnswers<A>(tx: PgQuery, op: string, opIds: readonly string[]): Promise<Map<string, A>> {
  if (opIds.length === 0) return new Map()
  const { rows } = await tx.query<{ op_id: string; op: string; answer: Buffer | null }>('SELECT op_id, op, answer FROM espra_ops WHERE op_id = ANY($1::text[])', [opIds])
  const out = new Map<string, A>()
  for (const r of rows) {
    if (r.op !== op) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'opId', reason: `was already used for ${r.op}, not ${op}` })
    out.set(r.op_id, decodeAnswer<A>(r.answer))
  }
  return out
}

/**
 * Applies `apply` once for `opId` and records its answer; a repeat answers
 * that record. Without an op id, `apply` runs on the pool as before.
 * `apply` may throw to roll back, claim included (a lease that found no
 * task: nothing to remember).
 */
export async function applyOnce<A>(db: Postgres, op: string, opId: string | undefined, apply: (tx: PgQuery) => Promise<A>): Promise<A> {
  if (opId === undefined) return apply(db)
  return db.transaction<A>(async (tx) => {
    // Twice at most: an expired record may be swept between the claim that found it and the read.
    for (let round = 0; round < 2; round++) {
      if ((await claimOps(tx, op, [opId])).size === 1) {
        const answer = await apply(tx)
        await tx.query('UPDATE espra_ops SET answer = $2 WHERE op_id = $1', [opId, encodeAnswer(answer)])
        return answer
      }
      const earlier: Map<string, A> = await recordedAnswers<A>(tx, op, [opId])
      if (earlier.has(opId)) return earlier.get(opId)!
    }
    throw createError('ESPRA_ERR_STORAGE_FAILED', { store: 'the datastore in PostgreSQL', problem: `op id ${opId} neither claimed nor recorded` })
  })
}

/**
 * The key of the row that holds the ids an op recorded beside its claim (an
 * op id never contains `:`, so no client's op id is ever one of these).
 */
export const answerKey = (opId: string): string => `${opId}:answer`

/** An op id's claim as recorded: `answer` (msgpack) for ops recorded in a transaction, `ids` of its answer row for the one-statement task ops. */
export interface OpRecord {
  readonly op: string
  readonly answer: unknown
  readonly ids: unknown[] | null
}

/**
 * The claim of `opId` and its answer row; null when neither is there (a
 * lease that found nothing had its claim deleted, or the record expired and
 * was swept). `ops` are the op names this op may have been recorded under
 * (a seed of the previous version records a task op in a transaction under
 * the plain name); any other is refused.
 */
export async function readOpRecord(db: PgQuery, ops: readonly string[], opId: string): Promise<OpRecord | null> {
  const { rows } = await db.query<{ op: string; answer: Buffer | null; ids: unknown[] | null }>(
    `SELECT c.op, c.answer, a.ids FROM espra_ops c LEFT JOIN espra_ops a ON a.op_id = $2 WHERE c.op_id = $1`,
    [opId, answerKey(opId)],
  )
  const r = rows[0]
  if (r === undefined) return null
  if (!ops.includes(r.op)) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'opId', reason: `was already used for ${r.op}, not ${ops[0]}` })
  return { op: r.op, answer: decodeAnswer(r.answer), ids: r.ids }
}

/** Deletes op-id records whose time passed, {@link OPS_SWEEP_BATCH} per statement; how many went. */
export async function removeExpiredOps(db: PgQuery): Promise<number> {
  let removed = 0
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM espra_ops WHERE op_id IN (SELECT op_id FROM espra_ops WHERE expires_at <= ${NOW_MS} LIMIT $1 FOR UPDATE SKIP LOCKED)`,
      [OPS_SWEEP_BATCH],
    )
    removed += rowCount
    if (rowCount < OPS_SWEEP_BATCH) return removed
  }
}
