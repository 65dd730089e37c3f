/** Plain-text views of the registry for the admin CLI (and later the dashboard). */

/** One node as the seed reports it (docs/meta-protocol.md, `NodeView`). */
export interface NodeView {
  id: string
  role: string
  region: string
  address: string
  port: number
  metricsPort: number
  pid: number
  children: number
  childrenWanted: number
  version: string
  build: string | null
  health: 'ok' | 'draining' | 'degraded' | 'suspect'
  startedAt: number
  registeredAt: number
  heartbeatAgeMs: number
  connected: boolean
  load: { connections: number; rps: number; rssBytes: number; lagMs: number; pendingUploads?: number }
  /** Set while an operator has the node drained (`admin drain`). */
  drain?: { then: 'stop' | 'idle' | 'restart'; graceMs: number; at: number; restartOf?: number } | null
  /** Nodes run with `--elb-target-group`: their target state as they last saw it. */
  elb?: { state: string; targetGroup: string }
}

const COLUMNS: [string, (n: NodeView) => string][] = [
  ['ID', (n) => n.id],
  ['ROLE', (n) => n.role],
  ['REGION', (n) => n.region],
  ['ADDRESS', (n) => `${n.address}:${n.port}`],
  ['METRICS', (n) => String(n.metricsPort)],
  ['PID', (n) => String(n.pid)],
  ['CHILDREN', (n) => `${n.children}/${n.childrenWanted}`],
  ['VERSION', (n) => n.version],
  ['BUILD', (n) => n.build ?? '-'],
  ['HEALTH', (n) => (n.drain ? `${n.health} (drained, then ${n.drain.then})` : n.health)],
  ['HEARTBEAT', (n) => `${(n.heartbeatAgeMs / 1000).toFixed(1)}s`],
  ['CONNS', (n) => String(n.load.connections)],
  ['REQ/S', (n) => n.load.rps.toFixed(0)],
  ['RSS', (n) => `${(n.load.rssBytes / 1024 ** 2).toFixed(0)}MB`],
  ['LAG', (n) => `${n.load.lagMs.toFixed(1)}ms`],
]

export function formatNodes(nodes: readonly NodeView[]): string {
  if (nodes.length === 0) return '(no nodes registered)'
  const sorted = [...nodes].sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id))
  const rows = [COLUMNS.map(([title]) => title), ...sorted.map((n) => COLUMNS.map(([, cell]) => cell(n)))]
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

export function formatSummary(seed: string, nodes: readonly NodeView[]): string {
  const byHealth = new Map<string, number>()
  for (const n of nodes) byHealth.set(n.health, (byHealth.get(n.health) ?? 0) + 1)
  const roles = new Map<string, number>()
  for (const n of nodes) roles.set(n.role, (roles.get(n.role) ?? 0) + 1)
  const health = [...byHealth].map(([h, c]) => `${c} ${h}`).join(', ') || 'none'
  const perRole = [...roles].sort().map(([r, c]) => `${r} ${c}`).join(', ') || 'none'
  const pending = nodes.filter((n) => (n.load.pendingUploads ?? 0) > 0)
  const uploads = pending.length === 0 ? '' : `\nuploads pending (blob store unreachable, retrying): ${pending.map((n) => `${n.id} ${n.load.pendingUploads}`).join(', ')}`
  const drained = nodes.filter((n) => n.drain)
  const drains = drained.length === 0 ? '' : `\ndrained: ${drained.map((n) => `${n.id} (then ${n.drain!.then}, since ${new Date(n.drain!.at).toISOString()})`).join(', ')}`
  return `seed ${seed}: ${nodes.length} nodes (${health})\nroles: ${perRole}${uploads}${drains}`
}

/** One line of task-queue counts (`admin tasks`, `admin status`). */
export const formatTaskCounts = (backend: string, c: { ready: number; delayed: number; leased: number; dead: number }): string =>
  `tasks (${backend} queue): ${c.ready} ready, ${c.delayed} delayed, ${c.leased} leased, ${c.dead} dead`

/** `1d 2h`, `2h 5m`, `5m 3s`, `42s`: a time left, to the two largest units. */
export function formatTimeLeft(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000))
  const parts: [number, string][] = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'], [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']]
  const first = parts.findIndex(([n]) => n > 0)
  if (first < 0) return '0s'
  return parts.slice(first, first + 2).filter(([n]) => n > 0).map(([n, u]) => `${n}${u}`).join(' ')
}

/** The maintenance line of `admin status` and `admin maintenance` (the seed's clock as `now`). */
export function formatMaintenance(state: { message: string; until: number; hosts: readonly string[] | null; allow: readonly string[] } | null, now: number): string {
  if (state === null) return 'maintenance: off'
  const until = new Date(state.until).toISOString().replace(/\.\d+Z$/, 'Z')
  const hosts = state.hosts === null ? 'every host' : state.hosts.join(', ')
  const allow = state.allow.length === 0 ? '' : `; allowed: ${state.allow.join(', ')}`
  return `maintenance: ON until ${until} (${formatTimeLeft(state.until - now)} left) for ${hosts}${allow}; message: ${JSON.stringify(state.message)}`
}

/** One entry of `node.drains`. */
export interface DrainedNode {
  id: string
  then: 'stop' | 'idle' | 'restart'
  graceMs: number
  at: number
  registered: boolean
}

/** The drained nodes not registered now (stopped by their order, or ordered with --force); '' when none. */
export function formatDrainedAway(drains: readonly DrainedNode[]): string {
  const away = drains.filter((d) => !d.registered)
  if (away.length === 0) return ''
  return `drained, not registered (admin undrain, then start them): ${away.map((d) => `${d.id} (then ${d.then}, since ${new Date(d.at).toISOString()})`).join(', ')}`
}

/** A byte count for people: B, KB or MB. */
export function formatBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 ** 2).toFixed(1)} MB`
}
