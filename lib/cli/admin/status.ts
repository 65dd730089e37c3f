/**
 * `admin status` and `GET /api/status`: the cluster in one read. Each part
 * beyond the node list is asked separately and may be unavailable on its
 * own (a Redis queue down, an older seed), so one failing part never hides
 * the others: it comes back as `{error}` and the CLI prints "unavailable".
 */
import type { MaintenanceState } from '../../core/node-state.js'
import { createDatastoreClient } from '../../storage/datastore-client.js'
import type { MetaClient } from '../../transport/meta-client.js'
import type { TaskQueue } from '../../tasks/queue.js'
import { readEngineLease, type EngineLeaseRecord } from '../../alerts/engine-lease.js'
import { formatDrainedAway, formatMaintenance, formatNodes, formatSummary, formatTaskCounts, type DrainedNode, type NodeView } from './format.js'

const REQUEST_TIMEOUT_MS = 5000

/** A part of the status the seed (or the queue) could not give, with why. */
export interface Unavailable {
  error: { code: string; message: string }
}

export interface ClusterStatus {
  /** The seed that answered. */
  seed: string
  nodes: NodeView[]
  maintenance: { state: MaintenanceState | null; now: number } | Unavailable
  drains: { drains: DrainedNode[] } | Unavailable
  tasks: { backend: string; counts: { ready: number; delayed: number; leased: number; dead: number } } | ({ backend: string } & Unavailable)
  /** Which seed leads and its epoch (op `leader`, answered by the seed reached; docs/postgres.md). */
  leader: LeaderStatus | Unavailable
  /** Which admin node runs the alert engine (docs/alerts.md, "One engine per cluster"); null before any took the lease. */
  alertEngine: { lease: (EngineLeaseRecord & { held: boolean }) | null } | Unavailable
}

export interface LeaderStatus {
  /** The seed that answered. */
  seed: string
  /** False with the embedded datastore: one seed, no lease. */
  fenced: boolean
  leaseMs: number
  leader: boolean
  epoch: number | null
  holder: string | null
  address: string | null
}

const unavailable = (err: unknown): Unavailable => {
  const { code, message } = err as { code?: unknown; message?: unknown }
  return { error: { code: typeof code === 'string' ? code : 'ESPRA_ERR_INTERNAL', message: String(message) } }
}
const isUnavailable = (v: object): v is Unavailable => 'error' in v

export async function listNodes(client: MetaClient): Promise<NodeView[]> {
  return client.request<NodeView[]>('nodes', {}, REQUEST_TIMEOUT_MS)
}

/** Reads every part of the status; only the node list failing fails the whole. */
export async function readStatus(client: MetaClient, queue: TaskQueue, seed: string): Promise<ClusterStatus> {
  const nodes = await listNodes(client)
  const [tasks, maintenance, drains, leader, alertEngine] = await Promise.all([
    queue.counts().then((counts) => ({ backend: queue.backend, counts }), (err: unknown) => ({ backend: queue.backend, ...unavailable(err) })),
    client.request<{ state: MaintenanceState | null; now: number }>('maintenance.get', {}, REQUEST_TIMEOUT_MS).then(({ state, now }) => ({ state, now }), unavailable),
    // Drained nodes that are not registered (stopped by their order) show nowhere else.
    client.request<{ drains: DrainedNode[] }>('node.drains', {}, REQUEST_TIMEOUT_MS).then(({ drains }) => ({ drains }), unavailable),
    client.request<LeaderStatus>('leader', {}, REQUEST_TIMEOUT_MS).then((l) => l, unavailable),
    readEngineLease(createDatastoreClient(client)).then((lease) => ({ lease }), unavailable),
  ])
  return { seed, nodes, maintenance, drains, tasks, leader, alertEngine }
}

/** `leader: seed-a at 10.0.0.5:7000 (epoch 3, lease 2000 ms)`; one seed on the embedded datastore says so. */
export function formatLeader(l: LeaderStatus | Unavailable): string {
  if (isUnavailable(l)) return `leader: unknown (${l.error.message})`
  if (!l.fenced) return `leader: ${l.holder ?? l.seed} (embedded datastore: the only seed)`
  if (l.holder === null) return `leader: none holds the lease right now (last epoch ${l.epoch ?? 'none'}; a seed takes over within ${l.leaseMs} ms)`
  return `leader: ${l.holder} at ${l.address} (epoch ${l.epoch}, lease ${l.leaseMs} ms)`
}

/** `alert engine: admin-1 (epoch 3, lease 10000 ms, renewed 2 s ago)`, or why none runs. */
export function formatAlertEngine(e: ClusterStatus['alertEngine'], now = Date.now()): string {
  if (isUnavailable(e)) return `alert engine: unknown (${e.error.message})`
  const l = e.lease
  if (l === null) return 'alert engine: none yet (no admin node with --alerts true has taken the lease)'
  if (l.holder === null) return `alert engine: none (released at epoch ${l.epoch}; an admin node with --alerts true takes it within ${Math.round(l.leaseMs / 4)} ms)`
  const ago = `renewed ${Math.max(0, Math.round((now - l.renewedAt) / 1000))} s ago`
  if (!l.held) return `alert engine: none holds the lease (${l.holder} at epoch ${l.epoch} ran out, ${ago}; a standby takes over within ${2 * l.leaseMs} ms)`
  return `alert engine: ${l.holder} (epoch ${l.epoch}, lease ${l.leaseMs} ms, ${ago})`
}

/** The text `admin status` prints. */
export function formatStatus(s: ClusterStatus): string {
  const counts = isUnavailable(s.tasks) ? `tasks (${s.tasks.backend} queue): unavailable (${s.tasks.error.message})` : formatTaskCounts(s.tasks.backend, s.tasks.counts)
  const maintenance = isUnavailable(s.maintenance) ? `maintenance: unknown (${s.maintenance.error.message})` : formatMaintenance(s.maintenance.state, s.maintenance.now)
  const away = isUnavailable(s.drains) ? `drained nodes: unavailable (${s.drains.error.message})` : formatDrainedAway(s.drains.drains)
  return `${formatSummary(s.seed, s.nodes)}\n${formatLeader(s.leader)}\n${formatAlertEngine(s.alertEngine)}\n${maintenance}${away ? `\n${away}` : ''}\n${counts}\n\n${formatNodes(s.nodes)}\n`
}
