/**
 * What a seed that takes the lead (or starts again) does with deploys its
 * predecessor left unfinished (docs/postgres.md, "What survives a leader
 * failover"): the newest deploy, when its record was written by code that can
 * resume it (`stagingAt`, `canaryPlanned`), is resumed once the grace ends:
 * - still `staging`: staged again on the nodes registered then (with its
 *   canary plan, `canaryPlan`, when it has one: the canary starts once staged);
 * - `canary` (its canary was being watched; the record carries the plan and
 *   the canary's nodes and start): the watch goes on for the rest of its time.
 * Every other record left `staging` or `canary` is over, and nodes that may
 * hold its build staged are told `build.cancel`.
 */
import { parseCanaryPlan, type CanaryPlan } from '../lib/builds/canary.js'
import type { BuildRecord } from '../lib/builds/manifest.js'

/** Unfinished deploys whose builds nodes are told to drop: the newest this many. */
export const MAX_CANCELLED = 10

export interface ResumePlan {
  /** The deploy to resume (null: none): staged again when its record says `staging`, its canary watched on when `canary`. */
  readonly resume: BuildRecord | null
  /** The newest deploy was activated (the current-build pointer names it) before its record said so. */
  readonly activated: BuildRecord | null
  /** Builds of unfinished deploys that will not be resumed, newest first: nodes drop them. */
  readonly cancel: string[]
}

/** When a record's last deploy started: its commit, or the rollback to it. */
const startedAt = (r: BuildRecord): number => r.stagingAt ?? r.at

const unfinished = (r: BuildRecord): boolean => r.state === 'staging' || r.state === 'canary'

/** The record's canary plan when it holds a valid one (records come from the datastore: checked again). */
export function planOf(r: BuildRecord): CanaryPlan | null {
  if (r.canaryPlan === undefined) return null
  try {
    return parseCanaryPlan(r.canaryPlan)
  } catch {
    return null
  }
}

/** A canary watch the record describes well enough to go on with: its nodes, start and time. */
const watchable = (r: BuildRecord): boolean => {
  const c = r.canary
  return c !== undefined && Array.isArray(c.nodes) && c.nodes.length > 0 && c.nodes.every((n) => typeof n === 'string')
    && typeof c.startedAt === 'number' && typeof c.timeMs === 'number' && Array.isArray(c.baseline?.nodes)
}

/** Whether a deploy left unfinished can be resumed from its record. */
function resumable(r: BuildRecord): boolean {
  if (typeof r.stagingAt !== 'number') return false
  if (r.state === 'staging') return r.canaryPlanned === false || (r.canaryPlanned === true && planOf(r) !== null)
  return r.state === 'canary' && r.canaryPlanned === true && planOf(r) !== null && watchable(r)
}

/** Reads the records (any order) and the current-build pointer; decides, writes nothing. */
export function planResume(records: readonly BuildRecord[], currentId: string | null): ResumePlan {
  const byStart = [...records].sort((a, b) => startedAt(b) - startedAt(a) || b.n - a.n)
  const newest = byStart[0]
  const ok = newest !== undefined && resumable(newest)
  const activated = ok && newest.id === currentId ? newest : null
  const resume = ok && activated === null ? newest : null
  const cancel = byStart.filter((r) => unfinished(r) && r !== resume && r !== activated && r.id !== currentId).slice(0, MAX_CANCELLED).map((r) => r.id)
  return { resume, activated, cancel }
}
