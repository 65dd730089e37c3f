/**
 * Ops applied once per op id in PostgreSQL (lib/storage/op-id.ts): the op
 * and the row `espra_ops (op_id, op, answer, expires_at)` that remembers it
 * commit in one transaction. The op id goes in first (`INSERT … ON CONFLICT
 * DO NOTHING`): a second transaction with the same id, on any seed of the
 * database, waits on the primary key until the first commits or rolls back;
 * then it either finds the row (and answers what the first answered,
 * applying nothing) or claims the id itself. One statement with a CTE could
 * not wait like that, so it would be racy.
 */
import { Packr } from 'msgpackr'
import { createError } from '../core/errors.js'
import { OP_ID_TTL_MS } from './op-id.js'
import { NOW_MS } from './postgres-clock.js'
import type { PgQuery, Postgres } from './postgres.js'

// Plain msgpack maps (no records), as the meta port carries them.
const packr = new Packr({ useRecords: false })
export const encodeAnswer = (answer: unknown): Buffer => packr.pack(answer)
const decodeAnswer = <A>(bytes: Buffer | null): A => (bytes === null ? undefined : packr.unpack(bytes)) as A
/** Deleted per statement by {@link removeExpiredOps}: short transactions, and the sweep yields between them. */
export const OPS_SWEEP_BATCH = 5000

/** Claims op ids in this transaction; answers the ones that were new (the rest are recorded by an earlier op, or being so). */
export async function claimOps(tx: PgQuery, op: string, opIds: readonly string[], answers?: readonly Buffer[]): Promise<Set<string>> {
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
