/**
 * Canary deploys, the shapes the seed, the meta protocol and the admin CLI
 * share (docs/operations.md, "Canary deploys"): the plan a `build.commit`
 * carries (`canary: {nodes | percent, timeMs}`), how many app nodes it
 * picks, the figures the seed compares and the rules that judge them.
 */
import { createError } from '../core/errors.js'
import { quantileOf } from '../core/latency-histogram.js'
import { isMap } from '../transport/meta-shapes.js'

export const CANARY_MIN_MS = 5_000
export const CANARY_MAX_MS = 60 * 60_000
/** The 5xx and p99 rules judge only with at least this many canary answers (and, for p99, baseline answers). */
export const CANARY_MIN_REQUESTS = 100
/** The canaries fail when their 5xx rate is above the larger of this and twice the baseline's. */
export const CANARY_MIN_ERROR_RATE = 0.01
/** The canaries fail when their p99 is above twice the baseline's plus this. */
export const CANARY_P99_FLOOR_MS = 50
/** Before the end, the canaries fail as soon as they sent this many answers with a 5xx rate above twice the limit. */
export const CANARY_EARLY_MIN_REQUESTS = 500

/** How many app nodes take the build first (one of the two), and for how long the seed watches them. */
export interface CanaryPlan {
  readonly nodes?: number
  readonly percent?: number
  readonly timeMs: number
}

/** Answers of a set of app nodes during the watch. */
export interface CanaryFigures {
  readonly nodes: readonly string[]
  readonly requests: number
  readonly errors5xx: number
  /** errors5xx / requests (0 without requests). */
  readonly errorRate: number
  readonly crashes: number
  /** The upper bound of the latency bucket holding the 99th percentile; null without answers. */
  readonly p99Ms: number | null
}

export type CanaryVerdict = 'watching' | 'passed' | 'failed' | 'replaced'

/** A canary deploy as `build.status`, `build.list` and the build's record show it. */
export interface CanaryState {
  readonly plan: CanaryPlan
  readonly nodes: readonly string[]
  readonly startedAt: number
  readonly timeMs: number
  verdict: CanaryVerdict
  /** Why it failed (empty otherwise). */
  reasons: string[]
  canary: CanaryFigures
  baseline: CanaryFigures
  /** While watching: ms left. */
  endsInMs?: number
}

const bad = (field: string, allowed: string) => createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: `must be ${allowed}` })

/** Checks the `canary` field of `build.commit`; throws `ESPRA_ERR_META_BAD_REQUEST` naming the field. */
export function parseCanaryPlan(raw: unknown): CanaryPlan {
  if (!isMap(raw)) throw bad('canary', 'a map {nodes | percent, timeMs}')
  const { nodes, percent, timeMs } = raw
  if ((nodes === undefined) === (percent === undefined)) throw bad('canary', 'given exactly one of nodes and percent')
  if (nodes !== undefined && (typeof nodes !== 'number' || !Number.isInteger(nodes) || nodes < 1 || nodes > 1000)) throw bad('canary.nodes', 'an integer from 1 to 1000')
  if (percent !== undefined && (typeof percent !== 'number' || !Number.isFinite(percent) || percent <= 0 || percent >= 100)) throw bad('canary.percent', 'a number above 0 and below 100')
  if (typeof timeMs !== 'number' || !Number.isInteger(timeMs) || timeMs < CANARY_MIN_MS || timeMs > CANARY_MAX_MS) {
    throw bad('canary.timeMs', `an integer from ${CANARY_MIN_MS} to ${CANARY_MAX_MS} (5 s to 1 h)`)
  }
  return nodes !== undefined ? { nodes: nodes as number, timeMs } : { percent: percent as number, timeMs }
}

/**
 * How many of `appNodes` app nodes are canaries: `nodes`, or `percent` of
 * them rounded up; at least 1 and never all (at least one stays to compare
 * with). 0 when there are fewer than 2 app nodes.
 */
export function canaryCount(plan: CanaryPlan, appNodes: number): number {
  if (appNodes < 2) return 0
  const wanted = plan.nodes ?? Math.ceil((appNodes * plan.percent!) / 100)
  return Math.min(appNodes - 1, Math.max(1, wanted))
}

/** Sums of counts as the seed accumulates them per set of nodes. */
export interface Tally {
  requests: number
  errors5xx: number
  crashes: number
  readonly latency: number[]
}

export const emptyTally = (): Tally => ({ requests: 0, errors5xx: 0, crashes: 0, latency: [] })

export function figuresOf(nodes: readonly string[], t: Tally): CanaryFigures {
  return {
    nodes: [...nodes], requests: t.requests, errors5xx: t.errors5xx, crashes: t.crashes,
    errorRate: t.requests === 0 ? 0 : t.errors5xx / t.requests, p99Ms: quantileOf(t.latency, 0.99),
  }
}

/**
 * The rules applied at the end of the watch (crashes and refusals fail a
 * canary at once, elsewhere): returns the reasons the canaries did worse,
 * empty when they pass.
 */
export function judge(canary: CanaryFigures, baseline: CanaryFigures): string[] {
  const reasons: string[] = []
  if (canary.crashes > 0) reasons.push(`${canary.crashes} worker crash(es) on the canaries`)
  if (canary.requests >= CANARY_MIN_REQUESTS) {
    const limit = Math.max(CANARY_MIN_ERROR_RATE, 2 * baseline.errorRate)
    if (canary.errorRate > limit) reasons.push(`5xx rate ${pct(canary.errorRate)} over the limit ${pct(limit)} (max of 1 % and twice the baseline's ${pct(baseline.errorRate)})`)
    if (baseline.requests >= CANARY_MIN_REQUESTS && canary.p99Ms !== null && baseline.p99Ms !== null) {
      const limitMs = 2 * baseline.p99Ms + CANARY_P99_FLOOR_MS
      if (canary.p99Ms > limitMs) reasons.push(`p99 ${canary.p99Ms} ms over the limit ${limitMs} ms (twice the baseline's ${baseline.p99Ms} ms plus ${CANARY_P99_FLOOR_MS} ms)`)
    }
  }
  return reasons
}

/**
 * Checked at every sample before the end: a canary clearly worse than the
 * 5xx limit (twice it, over at least CANARY_EARLY_MIN_REQUESTS answers)
 * fails at once rather than serving errors for the rest of the watch. The
 * margin keeps a canary near the limit from failing on an early streak.
 */
export function judgeEarly(canary: CanaryFigures, baseline: CanaryFigures): string[] {
  if (canary.requests < CANARY_EARLY_MIN_REQUESTS) return []
  const limit = Math.max(CANARY_MIN_ERROR_RATE, 2 * baseline.errorRate)
  if (canary.errorRate <= 2 * limit) return []
  return [`5xx rate ${pct(canary.errorRate)} over twice the limit ${pct(limit)} after ${canary.requests} answers (max of 1 % and twice the baseline's ${pct(baseline.errorRate)}): failed before the end of the watch`]
}

export const pct = (rate: number) => `${(rate * 100).toFixed(2)} %`

/** One line: `canary app-1: 4,210 answers, 5xx 20.05 %, p99 10 ms, 0 crashes`. */
export function formatFigures(label: string, f: CanaryFigures): string {
  return `${label} ${f.nodes.join(',') || '(none)'}: ${f.requests} answers, ${f.errors5xx} 5xx (${pct(f.errorRate)}), p99 ${f.p99Ms === null ? '-' : `${f.p99Ms} ms`}, ${f.crashes} worker crash(es)`
}
