/**
 * The builds the seed's nodes are told to drop (`build.cancel`): deploys
 * refused, replaced, or left unfinished by a previous leader, newest last.
 * A node that subscribes is told each one, so a node that left a round, or
 * staged under a dead leader, drops what it holds. Bounded by
 * {@link MAX_CANCELLED} (build-resume.ts).
 */
import { MAX_CANCELLED } from './build-resume.js'

export interface BuildCancels {
  /** `id` is staged nowhere on purpose: listed newest, and `tell(id)` unless `tell` is false. */
  cancel(id: string, tell?: boolean): void
  /** A deploy of `id` starts: nodes are no longer told to drop it. */
  restage(id: string): void
  /** The builds a subscribing node is told to drop, oldest first. */
  ids(): readonly string[]
}

/** `tell` sends `build.cancel` for one build to every subscriber now. */
export function createBuildCancels(tell: (id: string) => void): BuildCancels {
  const cancelled: string[] = []
  return {
    cancel(id, now = true) {
      const at = cancelled.indexOf(id)
      if (at !== -1) cancelled.splice(at, 1)
      cancelled.push(id)
      if (cancelled.length > MAX_CANCELLED) cancelled.shift()
      if (now) tell(id)
    },
    restage(id) {
      const at = cancelled.indexOf(id)
      if (at !== -1) cancelled.splice(at, 1)
    },
    ids: () => cancelled,
  }
}
