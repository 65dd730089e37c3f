/**
 * Counts an app child's answers for canary deploys: per build, answers,
 * 5xx answers, worker crashes and a latency histogram (time to the status
 * line). The hot path is a map lookup and three increments. The child sends
 * the counts of the build it serves now to its parent at every heartbeat
 * interval; the parent sums its children's (`load.app` of the heartbeat).
 */
import { LATENCY_BOUNDS_MS, latencyBucket } from '../../lib/core/latency-histogram.js'
import type { AppLoad } from '../../lib/transport/meta-shapes.js'

/** Child → parent: this child's counts for the build it serves (since it started serving it). */
export interface AnswersReport {
  readonly t: 'answers'
  readonly load: AppLoad
}

export interface AnswerMeter {
  /** An answer with `status` from `build`, `startedAt` from performance.now() when the request came. */
  answer(build: string, status: number, startedAt: number): void
  /** A worker of `build` exited by itself. */
  crash(build: string): void
  /** The counts of `build` (zeros when none); drops the counts of every other build. */
  report(build: string | null): AppLoad
}

interface Counts {
  requests: number
  errors5xx: number
  crashes: number
  readonly latency: number[]
}

const fresh = (): Counts => ({ requests: 0, errors5xx: 0, crashes: 0, latency: new Array<number>(LATENCY_BOUNDS_MS.length).fill(0) })

export function createAnswerMeter(): AnswerMeter {
  // A few builds at most: the one served, the one before it finishing its last answers.
  const builds = new Map<string, Counts>()
  const of = (build: string): Counts => {
    let counts = builds.get(build)
    if (counts === undefined) builds.set(build, (counts = fresh()))
    return counts
  }
  return {
    answer(build, status, startedAt) {
      const counts = of(build)
      counts.requests++
      if (status >= 500 && status <= 599) counts.errors5xx++
      counts.latency[latencyBucket(performance.now() - startedAt)]!++
    },
    crash: (build) => void of(build).crashes++,
    report(build) {
      for (const id of builds.keys()) if (id !== build) builds.delete(id)
      const counts = build === null ? fresh() : of(build)
      return { build, requests: counts.requests, errors5xx: counts.errors5xx, crashes: counts.crashes, latency: [...counts.latency] }
    },
  }
}
