/**
 * Op ids on a seed whose store cannot remember them in its own transaction
 * (the embedded LMDB datastore and task queue): remembered in this
 * process's memory instead, the first attempt's promise by op id, for
 * {@link EMBEDDED_OP_TTL_MS}. A repeat (the caller's link dropped and it
 * reconnected to this seed) waits for and answers the first attempt; one
 * that failed is forgotten, so a repeat runs it again. A seed restarted in
 * between has forgotten it: docs/postgres.md, "Op ids".
 * A store that remembers op ids itself (PostgreSQL) gets {@link storeRemembers}.
 */

/** Runs `apply` once per op id (`apply` receives the id for a store that remembers it itself). */
export type OpOnce = <A>(op: string, opId: string | undefined, apply: (opId?: string) => Promise<A>) => Promise<A>

/**
 * How long an op id is remembered in memory: the caller's resend window
 * (10 s, plus a waiting lease's wait of up to 30 s) and a request timeout,
 * with room; short because a lease's answer
 * (payloads included) is held that long.
 */
export const EMBEDDED_OP_TTL_MS = 120_000
/**
 * At most this many op ids are remembered (the oldest are forgotten first):
 * answers are held in memory, and a busy queue leases thousands of batches
 * a minute. A resend comes within seconds, so only a seed past this many
 * ops in that time forgets one early (the op then runs again: at least once,
 * as without op ids).
 */
export const EMBEDDED_OP_MAX = 10_000

/** The store applies op ids once itself: passed through. */
export const storeRemembers: OpOnce = (_op, opId, apply) => apply(opId)

export function createOpMemory(ttlMs = EMBEDDED_OP_TTL_MS, now: () => number = Date.now, max = EMBEDDED_OP_MAX): OpOnce {
  // Insertion order is expiry order (one TTL for all): the oldest go first.
  const seen = new Map<string, { op: string; answer: Promise<unknown>; until: number }>()
  return <A>(op: string, opId: string | undefined, apply: (opId?: string) => Promise<A>): Promise<A> => {
    if (opId === undefined) return apply()
    const t = now()
    for (const [id, entry] of seen) {
      if (entry.until > t) break
      seen.delete(id)
    }
    const earlier = seen.get(opId)
    if (earlier !== undefined && earlier.op === op) return earlier.answer as Promise<A>
    for (const id of seen.keys()) {
      if (seen.size < max) break
      seen.delete(id)
    }
    const answer = apply()
    seen.set(opId, { op, answer, until: t + ttlMs })
    answer.catch(() => seen.get(opId)?.answer === answer && seen.delete(opId))
    return answer
  }
}
