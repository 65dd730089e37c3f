/**
 * How deploys ended, known at once: build id → state, each node's part and
 * the canary, for `build.status` and `build.list` while the record is still
 * being written (build-records.ts `persistState`, started here). The newest
 * 100 are kept.
 */
import type { CanaryState } from '../lib/builds/canary.js'
import type { BuildState } from '../lib/builds/manifest.js'
import type { Logger } from '../lib/core/log.js'
import type { BuildRecords } from './build-records.js'
import type { StageNode } from './build-staging.js'

export interface BuildOutcome { state: BuildState; stage: StageNode[]; canary?: CanaryState }

export interface BuildOutcomes {
  /** `id`'s deploy ended so: kept here and written to its record; resolves once written, or the write failed (logged). */
  set(id: string, outcome: BuildOutcome): Promise<void>
  get(id: string): BuildOutcome | undefined
}

export function createBuildOutcomes(records: BuildRecords, log: Logger): BuildOutcomes {
  const outcomes = new Map<string, BuildOutcome>()
  return {
    set(id, outcome) {
      outcomes.delete(id)
      outcomes.set(id, outcome)
      if (outcomes.size > 100) outcomes.delete(outcomes.keys().next().value!)
      return records.persistState(id, outcome.state, outcome.stage, outcome.canary).catch((err: unknown) => log.error({ err, build: id }, 'could not record how the deploy ended'))
    },
    get: (id) => outcomes.get(id),
  }
}
