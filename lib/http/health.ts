/**
 * `GET /_espra/health`, the answer ELB health checks and operators read. The
 * same handler runs in every child and, for roles that do not fork (the seed),
 * in the parent.
 */
import type { NodeConfig } from '../core/config.js'
import { VERSION } from '../core/version.js'
import type { NodeState } from '../core/node-state.js'
import { sendJson } from './server.js'
import type { TemplatedApp } from './uws.js'

export const HEALTH_PATH = '/_espra/health'

/** The node's health word, as the seed's registry and the health JSON carry it. */
export type HealthWord = 'ok' | 'draining' | 'degraded'

/** `draining` wins; a crash-looping child, no live child (when children are wanted) or a dependency down is `degraded`. */
export function healthWord(state: NodeState): HealthWord {
  if (state.draining) return 'draining'
  if (state.dependencies && Object.keys(state.dependencies).length > 0) return 'degraded'
  if (state.crashLooping.length > 0) return 'degraded'
  if (state.childrenWanted > 0 && state.childrenAlive === 0) return 'degraded'
  return 'ok'
}

export interface HealthSource {
  readonly config: NodeConfig
  /** When the node's parent started (ms since epoch), so uptime survives child replacement. */
  readonly startedAt: number
  state(): NodeState
  /** Children count themselves alive: if this one answers, at least one is. */
  readonly answeringChildIsAlive: boolean
}

/** Builds the health status and JSON body from the current node state. */
export function healthAnswer(src: HealthSource): { status: number; body: Record<string, unknown> } {
  const state = src.state()
  const alive = src.answeringChildIsAlive ? Math.max(1, state.childrenAlive) : state.childrenAlive
  const ok = !state.draining && (state.childrenWanted === 0 || alive > 0)
  const body: Record<string, unknown> = {
    ok,
    health: healthWord({ ...state, childrenAlive: alive }),
    role: src.config.role,
    node: src.config.nodeId,
    region: src.config.region,
    version: VERSION,
    build: state.build,
    uptime: Math.round((Date.now() - src.startedAt) / 1000),
    pid: process.pid,
    children: { alive, wanted: state.childrenWanted, crashLooping: state.crashLooping },
    seedConnected: state.seedConnected,
    draining: state.draining,
  }
  if (state.buildRefused) body['buildRefused'] = state.buildRefused
  // Still 200: the node serves what does not need the dependency; the body says what is down.
  if (state.dependencies && Object.keys(state.dependencies).length > 0) body['dependencies'] = state.dependencies
  // Nodes that subscribe to routing (proxies) show the table they route by.
  if (state.routing) body['routing'] = { version: state.routing.version, nodes: state.routing.nodes }
  return { status: ok ? 200 : 503, body }
}

/** Adds the health route to an app (before the role's routes and the catch-all). */
export function addHealthRoute(app: TemplatedApp, src: HealthSource): void {
  app.get(HEALTH_PATH, (res) => {
    const { status, body } = healthAnswer(src)
    sendJson(res, status, body)
  })
}
