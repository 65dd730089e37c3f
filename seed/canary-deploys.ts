/**
 * The canary side of the seed's deploys (docs/operations.md, "Canary
 * deploys"): a commit's canary plan waits for its staging round; when the
 * round is activated the build goes current on the canary app nodes only
 * (the first of the round's app nodes by id), which also stage the previous
 * build again beside it (a standby: going back is then an instant swap, as
 * going on is for the other nodes), and a watch starts (canary.ts). Its verdict either activates the build everywhere (through
 * builds.ts) or sends the canaries back to the previous build and every
 * other node of the round `build.cancel`. A newer push or rollback replaces
 * a running canary the same way. One canary at a time; the build store
 * records each outcome.
 *
 * The record is written before the nodes are told (at most
 * {@link RECORD_FIRST_MS} later, the datastore away): a leader that dies
 * after telling the canaries to serve the build leaves a record saying so,
 * and one that dies after a verdict of failure leaves `canary-failed`, so a
 * leader that takes over (`resume`) goes on with the watch exactly when the
 * canaries may be serving the build, and never deploys a failed canary again.
 */
import type { BuildPush } from '../lib/builds/manifest.js'
import { canaryCount, type CanaryPlan, type CanaryState } from '../lib/builds/canary.js'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import { waitAtMost } from '../lib/core/signal.js'
import type { StageNode, StageRound } from './build-staging.js'
import { startCanaryWatch, type CanaryWatch } from './canary.js'
import type { Registry } from './registry.js'

/** How a canary deploy stands or ended, recorded by the build store like any deploy. */
export interface CanaryOutcome {
  readonly state: 'canary' | 'live' | 'canary-failed' | 'replaced'
  readonly stage: StageNode[]
  readonly canary: CanaryState
}

export interface CanaryDeploysOptions {
  readonly log: Logger
  readonly registry: Registry
  /** The build current everywhere (the one canaries go back to). */
  current(): BuildPush | null
  /** Sends a push to these nodes only (those still subscribed). */
  pushTo(nodes: Iterable<string>, op: string, value: unknown): void
  /** The canary passed: the build becomes current everywhere. */
  activate(push: BuildPush): void
  /** Records how it stands; resolves once written (or the write failed: logged by the caller's store). */
  record(id: string, outcome: CanaryOutcome): Promise<void>
}

export interface CanaryDeploys {
  /** Refuses a plan this cluster cannot run now (`appNodes`: app nodes that would stage the build). */
  check(plan: CanaryPlan, appNodes: number): void
  /** The canaries (and the rest, the baseline) the plan picks among these app node ids. */
  pick(plan: CanaryPlan, apps: readonly string[]): { canaries: string[]; baseline: string[] }
  /** Keeps a commit's plan until its round ends. */
  planned(id: string, plan: CanaryPlan): void
  /**
   * Goes on with a canary a previous leader was watching (its record: `state` `canary`): the canaries
   * serve the build again (most still do), the standby is staged again, and the watch ends when it
   * would have (build-resume.ts). A canary not registered now fails it at once.
   */
  resume(push: BuildPush, stage: StageNode[], was: CanaryState): void
  /** A staging round ended: true when this takes it over (activated, with a plan); its plan is forgotten either way. */
  roundDone(round: StageRound, stage: StageNode[]): boolean
  /** The running canary of `id` (null: none). */
  running(id: string): { stage: StageNode[]; state: CanaryState } | null
  /** A newer push or rollback: a running canary goes back first. */
  replace(): void
  /** A node refused build `id` after it was told to serve it. */
  refused(node: string, id: string, code: string, message: string): void
  /** A node's connection closed. */
  left(node: string): void
  /** Whether `id` is the previous build a canary node was asked to stage as its standby (its `build.staged` needs no round). */
  standby(node: string, id: string): boolean
  close(): void
}

interface Run {
  readonly push: BuildPush
  readonly previous: BuildPush
  readonly stage: StageNode[]
  readonly watch: CanaryWatch
}

/** How long telling the nodes waits for the record (the datastore may be away: the canary does not wait for it). */
export const RECORD_FIRST_MS = 2_000

const noFigures = (nodes: readonly string[]) => ({ nodes: [...nodes], requests: 0, errors5xx: 0, errorRate: 0, crashes: 0, p99Ms: null })
const appNodesOf = (round: StageRound) => [...round.nodes.values()].filter((n) => n.role === 'app' && n.state !== 'refused').map((n) => n.node).sort()

export function createCanaryDeploys(opts: CanaryDeploysOptions): CanaryDeploys {
  const { log } = opts
  const plans = new Map<string, CanaryPlan>()
  let run: Run | null = null

  function pick(plan: CanaryPlan, apps: readonly string[]) {
    const k = canaryCount(plan, apps.length)
    return { canaries: apps.slice(0, k), baseline: apps.slice(k) }
  }

  /** The build staged everywhere: current on the canaries only, and watched. */
  function start(round: StageRound, plan: CanaryPlan, stage: StageNode[]): void {
    const { id } = round.push
    const { canaries, baseline } = pick(plan, appNodesOf(round))
    const previous = opts.current()
    if (canaries.length === 0 || previous === null) {
      const reason = previous === null ? 'no current build to compare with and roll back to' : 'fewer than 2 app nodes staged the build: nothing to compare the canaries with'
      log.warn({ build: id }, `canary of build ${id} not started: ${reason}; current nowhere`)
      opts.pushTo(stage.map((n) => n.node), 'build.cancel', { id })
      const state: CanaryState = {
        plan, nodes: [], startedAt: Date.now(), timeMs: plan.timeMs, verdict: 'failed', reasons: [reason], canary: noFigures([]), baseline: noFigures(baseline),
      }
      void opts.record(id, { state: 'canary-failed', stage, canary: state })
      return
    }
    const mine: Run = {
      push: round.push, previous, stage,
      watch: startCanaryWatch({ log, id, plan, canaries, baseline, view: (node) => opts.registry.view(node), onVerdict: (state) => done(mine, state) }),
    }
    run = mine
    // Recorded first: a leader taking over from here finds the canaries it must watch (or roll back).
    void recordFirst(id, { state: 'canary', stage, canary: mine.watch.state() }).then(() => {
      if (run !== mine) return
      opts.pushTo(canaries, 'build', round.push)
      opts.pushTo(canaries, 'build.stage', previous)
    })
  }

  const recordFirst = (id: string, outcome: CanaryOutcome): Promise<void> => waitAtMost(opts.record(id, outcome), RECORD_FIRST_MS)

  function resume(push: BuildPush, stage: StageNode[], was: CanaryState): void {
    const { id } = push
    const previous = opts.current()
    const canaries = [...was.nodes]
    const baseline = [...was.baseline.nodes]
    if (previous === null) {
      const reason = 'no current build to roll back to on the leader that took over'
      log.warn({ build: id }, `canary of build ${id} not resumed: ${reason}; current nowhere`)
      opts.pushTo(stage.map((n) => n.node), 'build.cancel', { id })
      void opts.record(id, { state: 'canary-failed', stage, canary: { ...was, verdict: 'failed', reasons: [reason] } })
      return
    }
    const mine: Run = {
      push, previous, stage,
      watch: startCanaryWatch({
        log, id, plan: was.plan, canaries, baseline, startedAt: was.startedAt,
        view: (node) => opts.registry.view(node), onVerdict: (state) => done(mine, state),
      }),
    }
    run = mine
    log.info({ build: id, canaries, baseline, startedAt: was.startedAt }, `canary of build ${id} resumed: watched until ${new Date(was.startedAt + was.timeMs).toISOString()}`)
    opts.pushTo(canaries, 'build', push)
    opts.pushTo(canaries, 'build.stage', previous)
    for (const node of canaries) {
      const view = opts.registry.view(node)
      if (view === undefined || !view.connected) mine.watch.left(node, 'did not come back to the leader that took over')
    }
  }

  /** The canaries go back to the build current everywhere else; every other node of the round drops the staged build. */
  function rollBack(r: Run): void {
    opts.pushTo(r.watch.canaries, 'build', r.previous)
    const canaries = new Set(r.watch.canaries)
    opts.pushTo(r.stage.map((n) => n.node).filter((n) => !canaries.has(n)), 'build.cancel', { id: r.push.id })
  }

  function done(r: Run, state: CanaryState): void {
    if (run !== r) return
    run = null
    const { id } = r.push
    if (state.verdict === 'passed') {
      log.info({ build: id }, `canary of build ${id} passed: activating everywhere`)
      opts.activate(r.push)
      void opts.record(id, { state: 'live', stage: r.stage, canary: state })
      return
    }
    log.warn({ build: id, previous: r.previous.id, canaries: r.watch.canaries }, `canary of build ${id} failed: canaries back to ${r.previous.id}, current nowhere`)
    // Recorded first: a leader taking over never resumes a canary that failed.
    void recordFirst(id, { state: 'canary-failed', stage: r.stage, canary: state }).then(() => rollBack(r))
  }

  return {
    pick,
    check(plan, apps) {
      if (opts.current() === null) throw createError('ESPRA_ERR_BUILD_CANARY_UNAVAILABLE', { reason: 'it needs a current build to compare with and roll back to; push the first build without --canary', field: 'canary' })
      if (apps < 2) throw createError('ESPRA_ERR_BUILD_CANARY_UNAVAILABLE', { reason: `it needs at least 2 app nodes (canaries and at least one to compare with); ${apps} can stage builds now`, field: 'canary', appNodes: apps })
      if (plan.nodes !== undefined && plan.nodes >= apps) {
        throw createError('ESPRA_ERR_BUILD_CANARY_UNAVAILABLE', { reason: `${plan.nodes} canary node(s) would leave no app node to compare with: ${apps} can stage builds now`, field: 'canary.nodes', appNodes: apps })
      }
    },
    planned: (id, plan) => void plans.set(id, plan),
    resume,
    roundDone(round, stage) {
      const plan = plans.get(round.push.id)
      plans.delete(round.push.id)
      if (round.outcome !== 'activated' || plan === undefined) return false
      start(round, plan, stage)
      return true
    },
    running: (id) => (run?.push.id === id ? { stage: run.stage, state: run.watch.state() } : null),
    replace() {
      const r = run
      if (r === null) return
      run = null
      const state = r.watch.stop('replaced')
      log.warn({ build: r.push.id }, `canary of build ${r.push.id} replaced by a newer push or rollback: canaries back to ${r.previous.id}`)
      rollBack(r)
      void opts.record(r.push.id, { state: 'replaced', stage: r.stage, canary: state })
    },
    refused(node, id, code, message) {
      // A canary that cannot load the build it was told to serve fails the canary at once.
      if (run?.push.id === id) run.watch.refused(node, code, message)
    },
    left: (node) => run?.watch.left(node),
    standby: (node, id) => run !== null && run.previous.id === id && run.watch.canaries.includes(node),
    close() {
      if (run === null) return
      // Its record says `canary` (shown `abandoned` after a restart); nodes that re-subscribe get the previous build.
      log.warn({ build: run.push.id }, `seed stopping during the canary of build ${run.push.id}: the previous build ${run.previous.id} stays current`)
      run.watch.stop('replaced')
      run = null
    },
  }
}
