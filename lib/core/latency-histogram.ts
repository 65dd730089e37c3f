/**
 * A small fixed latency histogram: counts per bucket of
 * {@link LATENCY_BOUNDS_MS}, cheap enough for every answer on the hot path
 * (one comparison loop over 14 bounds, one increment). App nodes report
 * these counts in their heartbeats (`load.app.latency`); the seed sums them
 * over nodes and takes percentiles for canary deploys.
 */

/** Upper bounds (ms, inclusive) of each bucket; a slower answer counts in the last one. */
export const LATENCY_BOUNDS_MS: readonly number[] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000]

/** The bucket a duration falls in. */
export function latencyBucket(ms: number): number {
  const last = LATENCY_BOUNDS_MS.length - 1
  for (let i = 0; i < last; i++) if (ms <= LATENCY_BOUNDS_MS[i]!) return i
  return last
}

/**
 * The `q` quantile (0 < q ≤ 1) of the counts as the upper bound of the
 * bucket that holds it; null when there are no counts.
 */
export function quantileOf(counts: readonly number[], q: number): number | null {
  let total = 0
  for (const n of counts) total += n
  if (total === 0) return null
  const rank = Math.ceil(total * q)
  let seen = 0
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!
    if (seen >= rank) return LATENCY_BOUNDS_MS[Math.min(i, LATENCY_BOUNDS_MS.length - 1)]!
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]!
}
