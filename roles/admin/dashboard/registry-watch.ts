/**
 * What the dashboard's live view and charts read, from the seed's registry
 * (the `nodes` the admin link already asks for):
 *
 * - **history**: every {@link SAMPLE_MS} the sum of requests/s and
 *   connections per role, kept for the last hour ({@link HISTORY_SAMPLES}
 *   samples, a fixed ring: memory does not grow with time or with the
 *   number of nodes beyond their roles). Each admin child keeps its own,
 *   from its own start; `GET /api/history` answers it.
 * - **snapshots**: while an SSE stream asked for them (`GET /api/events?nodes=1`),
 *   the whole node list every {@link SNAPSHOT_MS}, so the figures that only
 *   heartbeats carry (load, connections, heartbeat age) move on screen; the
 *   seed pushes events only for joins, leaves and health changes.
 *
 * One request to the seed serves every stream of the child; nothing is
 * asked while no stream wants snapshots except the history sample.
 */
import type { Logger } from '../../../lib/core/log.js'
import type { NodeView } from '../../../lib/cli/admin/format.js'
import { listNodes } from '../../../lib/cli/admin/status.js'
import type { AdminSeedLink } from '../api-seed-link.js'

export const SAMPLE_MS = 10_000
export const HISTORY_SAMPLES = 360
export const SNAPSHOT_MS = 2_000

export interface RoleFigures {
  readonly nodes: number
  readonly rps: number
  readonly connections: number
}

export interface HistorySample {
  /** ms since the epoch. */
  readonly at: number
  readonly roles: Readonly<Record<string, RoleFigures>>
}

export interface RegistryWatch {
  /** Oldest first. */
  history(): { intervalMs: number; samples: HistorySample[] }
  /** Calls `listener` with every snapshot until the returned function is called. */
  subscribe(listener: (nodes: NodeView[]) => void): () => void
  close(): void
}

export function summarise(nodes: readonly NodeView[], at: number): HistorySample {
  const roles: Record<string, { nodes: number; rps: number; connections: number }> = {}
  for (const n of nodes) {
    const r = (roles[n.role] ??= { nodes: 0, rps: 0, connections: 0 })
    r.nodes++
    r.rps += n.load?.rps ?? 0
    r.connections += n.load?.connections ?? 0
  }
  for (const r of Object.values(roles)) r.rps = Math.round(r.rps * 10) / 10
  return { at, roles }
}

export function createRegistryWatch(link: AdminSeedLink, log: Logger): RegistryWatch {
  const ring: HistorySample[] = []
  const listeners = new Set<(nodes: NodeView[]) => void>()
  let snapshotTimer: NodeJS.Timeout | null = null
  let closed = false
  let asking = false

  const sample = (): void => {
    if (!link.client.connected) return
    listNodes(link.client).then((nodes) => {
      ring.push(summarise(nodes, Date.now()))
      if (ring.length > HISTORY_SAMPLES) ring.shift()
    }, (err: unknown) => log.debug({ err }, 'dashboard history: no sample this time'))
  }
  const snapshot = (): void => {
    if (asking || listeners.size === 0 || !link.client.connected) return
    asking = true
    listNodes(link.client).then((nodes) => {
      for (const l of listeners) l(nodes)
    }, (err: unknown) => log.debug({ err }, 'dashboard snapshot: the seed did not answer')).finally(() => (asking = false))
  }
  const sampler = setInterval(sample, SAMPLE_MS)
  sampler.unref()
  // The first sample once the link is up, so a chart has a point soon after start.
  link.client.ready.then(() => setTimeout(sample, 500).unref(), () => {})

  return {
    history: () => ({ intervalMs: SAMPLE_MS, samples: [...ring] }),
    subscribe(listener) {
      listeners.add(listener)
      if (snapshotTimer === null && !closed) {
        snapshotTimer = setInterval(snapshot, SNAPSHOT_MS)
        snapshotTimer.unref()
      }
      return () => {
        listeners.delete(listener)
        if (listeners.size === 0 && snapshotTimer !== null) {
          clearInterval(snapshotTimer)
          snapshotTimer = null
        }
      }
    },
    close() {
      closed = true
      clearInterval(sampler)
      if (snapshotTimer !== null) clearInterval(snapshotTimer)
      listeners.clear()
    },
  }
}
