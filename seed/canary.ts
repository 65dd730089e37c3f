/**
 * The seed's watch over a canary deploy (docs/operations.md, "Canary
 * deploys"): the build is current on the canary app nodes only, and for the
 * plan's time the seed samples every app node's heartbeat figures
 * (`load.app`: answers, 5xx, worker crashes, a latency histogram) and sums
 * what each set answered since the watch began: the canaries with the new
 * build, the baseline (the other app nodes of the round) with theirs. A
 * worker crash on a canary, a canary refusing the build or leaving fails it
 * at once, and so does a 5xx rate clearly over the limit (`judgeEarly`); at
 * the end the rules of lib/builds/canary.ts (`judge`) decide.
 * One verdict, told once; builds.ts rolls back or activates.
 */
import { emptyTally, figuresOf, judge, judgeEarly, type CanaryPlan, type CanaryState, type Tally } from '../lib/builds/canary.js'
import type { Logger } from '../lib/core/log.js'
import type { AppLoad, NodeView } from '../lib/transport/meta-shapes.js'

const SAMPLE_MS = 250

export interface CanaryWatchOptions {
  readonly log: Logger
  /** The canary build. */
  readonly id: string
  readonly plan: CanaryPlan
  readonly canaries: readonly string[]
  readonly baseline: readonly string[]
  /**
   * When the watch began (default now): a watch a new leader goes on with keeps its start and ends
   * at `startedAt + plan.timeMs` (at once when that has passed), judging what it samples from then.
   */
  readonly startedAt?: number
  /** A node as the registry sees it now (undefined: gone). */
  readonly view: (node: string) => NodeView | undefined
  /** Runs once, when the watch ends by its verdict (passed or failed); not after `stop`. */
  readonly onVerdict: (state: CanaryState) => void
}

export interface CanaryWatch {
  readonly id: string
  readonly canaries: readonly string[]
  /** The state now (figures as of the last sample; `endsInMs` while watching). */
  state(): CanaryState
  /** A canary refused the build (a child could not load it): fails the canary at once. */
  refused(node: string, code: string, message: string): void
  /** A node's connection closed (or, `why`, it did not come back): a canary leaving fails the canary. */
  left(node: string, why?: string): void
  /** Ends the watch without a verdict of its own (`replaced`, or the seed stops). */
  stop(verdict: 'replaced'): CanaryState
}

/** What one node answered during the watch: increments of its cumulative counts. */
interface NodeTally {
  /** The build its last counts were of (undefined: none seen yet). */
  build: string | null | undefined
  last: AppLoad | null
  readonly total: Tally
}

function add(total: Tally, last: AppLoad | null, now: AppLoad): void {
  // A child that restarted counts from 0 again: a count that went down adds nothing.
  const inc = (a: number, b: number) => Math.max(0, a - b)
  total.requests += inc(now.requests, last?.requests ?? 0)
  total.errors5xx += inc(now.errors5xx, last?.errors5xx ?? 0)
  total.crashes += inc(now.crashes, last?.crashes ?? 0)
  now.latency.forEach((n, i) => (total.latency[i] = (total.latency[i] ?? 0) + inc(n, last?.latency[i] ?? 0)))
}

function sum(tallies: Iterable<NodeTally>): Tally {
  const out = emptyTally()
  for (const { total } of tallies) {
    out.requests += total.requests
    out.errors5xx += total.errors5xx
    out.crashes += total.crashes
    total.latency.forEach((n, i) => (out.latency[i] = (out.latency[i] ?? 0) + n))
  }
  return out
}

export function startCanaryWatch(opts: CanaryWatchOptions): CanaryWatch {
  const { log, id } = opts
  const canarySet = new Set(opts.canaries)
  const tallies = new Map<string, NodeTally>([...opts.canaries, ...opts.baseline].map((n) => [n, { build: undefined, last: null, total: emptyTally() }]))
  const startedAt = opts.startedAt ?? Date.now()
  const restMs = Math.max(0, startedAt + opts.plan.timeMs - Date.now())
  const state: CanaryState = {
    plan: opts.plan, nodes: [...opts.canaries], startedAt, timeMs: opts.plan.timeMs, verdict: 'watching', reasons: [],
    canary: figuresOf(opts.canaries, emptyTally()), baseline: figuresOf(opts.baseline, emptyTally()),
  }
  let ended = false

  /** Reads every node's heartbeat figures; the canaries count the canary build only, the baseline the build it serves. */
  function sample(): void {
    for (const [node, tally] of tallies) {
      const app = opts.view(node)?.load.app
      if (app === undefined) continue
      const canary = canarySet.has(node)
      if (canary && app.build !== id) continue
      if (!canary && app.build === id) continue
      if (app.build !== tally.build) {
        // The canaries count from their swap to the build (their counts start at 0 then); the baseline from the watch's start.
        tally.build = app.build
        tally.last = canary ? null : app
        if (!canary) continue
      }
      add(tally.total, tally.last, app)
      tally.last = app
    }
    const total = (set: readonly string[]) => sum(set.map((n) => tallies.get(n)!))
    state.canary = figuresOf(opts.canaries, total(opts.canaries))
    state.baseline = figuresOf(opts.baseline, total(opts.baseline))
    if (state.canary.crashes > 0) return fail([`${state.canary.crashes} worker crash(es) on the canaries`])
    const early = judgeEarly(state.canary, state.baseline)
    if (early.length > 0) fail(early)
  }

  function end(verdict: 'passed' | 'failed' | 'replaced', reasons: string[]): void {
    if (ended) return
    ended = true
    clearInterval(sampler)
    clearTimeout(timer)
    state.verdict = verdict
    state.reasons = reasons
    delete state.endsInMs
    // A stop is logged by its caller, who knows why.
    if (verdict === 'replaced') return
    const line = `canary of build ${id} ${verdict}${reasons.length > 0 ? `: ${reasons.join('; ')}` : ''}`
    log[verdict === 'failed' ? 'warn' : 'info']({ build: id, canary: state.canary, baseline: state.baseline, reasons }, line)
    opts.onVerdict(state)
  }
  const fail = (reasons: string[]) => end('failed', reasons)

  const sampler = setInterval(sample, SAMPLE_MS)
  sampler.unref()
  const timer = setTimeout(() => {
    sample()
    if (ended) return
    const reasons = judge(state.canary, state.baseline)
    end(reasons.length > 0 ? 'failed' : 'passed', reasons)
  }, restMs)
  timer.unref()
  log.info({ build: id, canaries: opts.canaries, baseline: opts.baseline, timeMs: opts.plan.timeMs, restMs }, `build ${id} current on canaries ${opts.canaries.join(', ')}: watching for ${restMs} ms`)

  return {
    id,
    canaries: opts.canaries,
    state: () => (ended ? state : { ...state, endsInMs: Math.max(0, startedAt + opts.plan.timeMs - Date.now()) }),
    refused(node, code, message) {
      if (canarySet.has(node)) fail([`canary ${node} refused the build: ${code} ${message}`])
    },
    left(node, why = 'disconnected from the seed during the watch') {
      if (canarySet.has(node)) fail([`canary ${node} ${why}`])
    },
    stop(verdict) {
      end(verdict, [])
      return state
    },
  }
}
