/**
 * The read side of the seed's build store (docs/meta-protocol.md,
 * "Builds"): `build.status` (one build's deploy as it stands: the round
 * staging it, a deploy waiting for the grace to end to be resumed, a running
 * canary, else its record) and `build.list` (every build, newest first, with
 * the nodes that run it and those that refused it). Reads only: what is
 * running is asked of the pieces seed/builds.ts holds.
 */
import { isBuildId, type BuildPush, type BuildRecord, type BuildState } from '../lib/builds/manifest.js'
import type { CanaryState } from '../lib/builds/canary.js'
import { body, invalid } from './build-input.js'
import type { BuildOutcomes } from './build-outcomes.js'
import type { BuildRecords } from './build-records.js'
import type { BuildRefusals } from './build-refusals.js'
import type { BuildStaging, StageRound } from './build-staging.js'
import type { CanaryDeploys } from './canary-deploys.js'
import type { Registry } from './registry.js'

export interface BuildReadsOptions {
  readonly records: BuildRecords
  readonly staging: BuildStaging
  readonly canaries: CanaryDeploys
  readonly outcomes: BuildOutcomes
  readonly refusals: BuildRefusals
  readonly registry: Registry
  /** The build current everywhere now. */
  current(): BuildPush | null
  /** The deploy waiting for the registry's grace to end to be resumed (null: none). */
  pending(): string | null
  /** When that deploy is a canary being watched: its canary as the previous leader recorded it. */
  pendingCanary(): CanaryState | null
  /**
   * Settles once the records are loaded (a seed that just took the lead reads them again): until then a deploy
   * the previous leader left would read `abandoned` instead of waiting to be resumed.
   */
  loaded(): Promise<void>
}

export interface BuildReads {
  /** `build.status`. */
  status(raw: unknown): Promise<Record<string, unknown>>
  /** `build.list`. */
  list(raw: unknown): Promise<Record<string, unknown>>
}

export function createBuildReads(opts: BuildReadsOptions): BuildReads {
  const { records, staging, canaries, outcomes, refusals, registry } = opts

  /** A build's canary as it stands: the one running, else how it ended (null: deployed without one). */
  const canaryOf = (record: BuildRecord): CanaryState | null =>
    canaries.running(record.id)?.state ?? outcomes.get(record.id)?.canary ?? record.canary ?? null

  /** A record still saying `staging` or `canary` with nothing running for it: the seed restarted mid-deploy. */
  const stateOf = (record: BuildRecord, round: StageRound | null): BuildState | 'abandoned' =>
    round?.push.id === record.id ? 'staging' : opts.pending() === record.id ? (opts.pendingCanary() !== null ? 'canary' : 'staging') : canaries.running(record.id) !== null ? 'canary' : outcomes.get(record.id)?.state
      ?? (record.state === undefined ? 'live' : record.state === 'staging' || record.state === 'canary' ? 'abandoned' : record.state)

  return {
    async status(raw) {
      const id = body(raw)['id']
      if (!isBuildId(id)) throw invalid('id', 'must be a build id such as b12')
      await opts.loaded().catch(() => {})
      const current = opts.current()
      const round = staging.active()
      if (round?.push.id === id) {
        return { id, state: 'staging', current: current?.id === id, nodes: [...round.nodes.values()], deadlineInMs: Math.max(0, round.deadline - Date.now()) }
      }
      if (opts.pending() === id) {
        // Resumed when the registry's grace ends (nodes re-register meanwhile); the stages shown are the previous leader's.
        const record = await records.record(id)
        const canary = opts.pendingCanary()
        if (canary !== null) return { id, state: 'canary', current: false, nodes: record.stage ?? [], canary, resumeAfterGrace: true }
        return { id, state: 'staging', current: false, nodes: record.stage ?? [], resumeAfterGrace: true }
      }
      const running = canaries.running(id)
      if (running !== null) return { id, state: 'canary', current: false, nodes: running.stage, canary: running.state }
      const record = await records.record(id)
      const canary = canaryOf(record)
      return { id, state: stateOf(record, null), current: current?.id === id, nodes: outcomes.get(id)?.stage ?? record.stage ?? [], ...(canary ? { canary } : {}) }
    },

    async list(raw) {
      const limit = raw === undefined ? 100 : body(raw)['limit'] ?? 100
      if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid('limit', 'must be an integer from 1 to 1000')
      await opts.loaded().catch(() => {})
      const all = await records.all()
      const current = opts.current()
      const running = new Map<string, string[]>()
      const live = new Map([...registry.records()].map((node) => [node.id, node]))
      refusals.prune(live)
      for (const node of live.values()) {
        if (node.build === null || node.link === null) continue
        let ids = running.get(node.build)
        if (ids === undefined) running.set(node.build, (ids = []))
        ids.push(node.id)
      }
      const round = staging.active()
      const builds = all.slice(-limit).reverse().map((r) => {
        const stage = round?.push.id === r.id ? [...round.nodes.values()] : canaries.running(r.id)?.stage ?? outcomes.get(r.id)?.stage ?? r.stage ?? []
        const canary = canaryOf(r)
        const atStaging = stage.filter((n) => n.state === 'refused').map((n) => ({ node: n.node, code: n.code!, message: n.message! }))
        const later = refusals.of(r.id).map(([node, why]) => ({ node, ...why })).filter((x) => !atStaging.some((y) => y.node === x.node))
        return {
          id: r.id, at: r.at, message: r.message, files: r.files, bytes: r.bytes, ...(r.pushId !== undefined ? { pushId: r.pushId } : {}),
          current: r.id === current?.id, state: stateOf(r, round), nodes: (running.get(r.id) ?? []).sort(),
          refused: [...atStaging, ...later].sort((a, b) => a.node.localeCompare(b.node)),
          stage: stage.map((n) => ({ ...n })),
          canary,
        }
      })
      return { current: current?.id ?? null, builds }
    },
  }
}
