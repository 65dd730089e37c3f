/**
 * What a seed that takes the lead (or starts again) does with deploys its
 * predecessor left unfinished (docs/postgres.md, "What survives a leader
 * failover"): the newest deploy, when its record still says `staging`, was
 * written by code that can resume it (`stagingAt`, `canaryPlanned`) and has
 * no canary, is staged again on the nodes registered once the grace ends;
 * every other record left `staging` or `canary` is over, and nodes that may
 * hold its build staged are told `build.cancel`.
 */
import type { BuildRecord } from '../lib/builds/manifest.js'

/** Unfinished deploys whose builds nodes are told to drop: the newest this many. */
export const MAX_CANCELLED = 10

export interface ResumePlan {
  /** The deploy to stage again (null: none). */
  readonly resume: BuildRecord | null
  /** The newest deploy was activated (the current-build pointer names it) before its record said so. */
  readonly activated: BuildRecord | null
  /** Builds of unfinished deploys that will not be resumed, newest first: nodes drop them. */
  readonly cancel: string[]
}

/** When a record's last deploy started: its commit, or the rollback to it. */
const startedAt = (r: BuildRecord): number => r.stagingAt ?? r.at

const unfinished = (r: BuildRecord): boolean => r.state === 'staging' || r.state === 'canary'

/** Reads the records (any order) and the current-build pointer; decides, writes nothing. */
export function planResume(records: readonly BuildRecord[], currentId: string | null): ResumePlan {
  const byStart = [...records].sort((a, b) => startedAt(b) - startedAt(a) || b.n - a.n)
  const newest = byStart[0]
  const resumable = newest !== undefined && newest.state === 'staging' && typeof newest.stagingAt === 'number' && newest.canaryPlanned === false
  const activated = resumable && newest.id === currentId ? newest : null
  const resume = resumable && activated === null ? newest : null
  const cancel = byStart.filter((r) => unfinished(r) && r !== resume && r !== activated && r.id !== currentId).slice(0, MAX_CANCELLED).map((r) => r.id)
  return { resume, activated, cancel }
}
