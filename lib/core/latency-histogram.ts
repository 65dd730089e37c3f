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

/** Status classes counted by {@link StatusLatency}: index 0 is 1xx, 4 is 5xx. */
export const STATUS_CLASSES: readonly string[] = ['1xx', '2xx', '3xx', '4xx', '5xx']

/**
 * Answer latency per status class, for Prometheus histograms: plain counts
 * per bucket of {@link LATENCY_BOUNDS_MS} plus one overflow bucket (slower
 * than the last bound, so `+Inf` stays honest), and the sum of durations.
 * Recording is a comparison loop and two increments: no allocation, cheap
 * enough for every answer; the histogram values are built at scrape time.
 */
export class StatusLatency {
  /** `counts[cls * BUCKETS + bucket]`; bucket {@link LATENCY_BOUNDS_MS}.length is the overflow. */
  readonly counts: number[] = new Array<number>(STATUS_CLASSES.length * (LATENCY_BOUNDS_MS.length + 1)).fill(0)
  /** Sum of recorded durations per class, in ms. */
  readonly sumsMs: number[] = new Array<number>(STATUS_CLASSES.length).fill(0)

  /** Counts one answer of `status` (e.g. 404) that took `ms`. */
  record(status: number, ms: number): void {
    this.recordClass(((status / 100) | 0) - 1, ms)
  }

  /** Counts one answer of status class `cls` (0 for 1xx … 4 for 5xx; anything else counts as 5xx). */
  recordClass(cls: number, ms: number): void {
    const c = cls >= 0 && cls < 5 ? cls : 4
    const bounds = LATENCY_BOUNDS_MS
    let b = 0
    while (b < bounds.length && ms > bounds[b]!) b++
    this.counts[c * (bounds.length + 1) + b]!++
    this.sumsMs[c]! += ms
  }
}
