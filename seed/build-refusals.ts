/**
 * Builds app nodes refused outside a staging round (a straight load whose
 * init threw or whose files were missing): build id → node id → why. Kept in
 * memory: a refusal stands until that node serves the build or leaves the
 * registry (`build.list` shows it under `refused`).
 */
import type { NodeRecord } from './registry.js'

export interface BuildRefusal { code: string; message: string }

export interface BuildRefusals {
  add(build: string, node: string, why: BuildRefusal): void
  /** Drops the refusals of nodes that now serve that build or are no longer registered. */
  prune(live: ReadonlyMap<string, Pick<NodeRecord, 'build'>>): void
  /** The nodes that refused `build`, with why. */
  of(build: string): [string, BuildRefusal][]
}

export function createBuildRefusals(): BuildRefusals {
  const refusals = new Map<string, Map<string, BuildRefusal>>()
  return {
    add(build, node, why) {
      let nodes = refusals.get(build)
      if (nodes === undefined) refusals.set(build, (nodes = new Map()))
      nodes.set(node, why)
    },
    prune(live) {
      for (const [id, nodes] of refusals) {
        for (const nodeId of nodes.keys()) if (live.get(nodeId)?.build === id || !live.has(nodeId)) nodes.delete(nodeId)
        if (nodes.size === 0) refusals.delete(id)
      }
    },
    of: (build) => [...(refusals.get(build) ?? [])],
  }
}
