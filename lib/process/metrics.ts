/**
 * Prometheus metrics. Each child keeps its own registry; the parent asks every
 * child for `getMetricsAsJSON()` over IPC and serves them next to its own,
 * never summed: every child's series carry `child="<slot index>"` and the
 * parent's carry `process="parent"`, so the one child `--max-child-rss`
 * acts on, or the one whose event loop lags, shows as itself. The slot index
 * (0 … --children-1) is what a replacement child inherits, so a series goes
 * on across reloads and RSS replacements (its counters restart from zero, a
 * reset Prometheus' `rate()` handles) instead of a new series per pid; the
 * pid is in `espra_node_child_pid`.
 */
import { createServer, type Server } from 'node:http'
import { collectDefaultMetrics, Counter, Registry } from 'prom-client'
import type { RoleName } from '../core/config.js'
import { createError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { HttpServerStats } from '../http/server.js'
import { counterFrom, gaugeFrom, statusLatencyHistogram, type Labels, type MetricJson } from './metric-sources.js'

/** One child's metrics as sent over IPC. */
export type MetricsJson = MetricJson[]

/** What the supervisor gathers from one child for a scrape. */
export interface ChildMetrics {
  /** The child's slot (0 … --children-1): its `child` label. */
  readonly child: number
  readonly pid: number
  readonly metrics: MetricsJson
}

/**
 * A child's registry: process metrics, the public port's request counters
 * and `espra_<role>_http_request_duration_seconds`. The request figures are
 * read from the server's plain counters at scrape time, so serving a request
 * costs no metric update. Roles add their own series to it.
 */
export function createChildRegistry(role: RoleName, stats: () => HttpServerStats): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  counterFrom(registry, `espra_${role}_http_requests_total`, 'HTTP requests received on the public port (health checks included)', () => stats().requests)
  gaugeFrom(registry, `espra_${role}_http_requests_in_flight`, 'HTTP requests whose response has not finished', () => stats().inflight)
  statusLatencyHistogram(
    registry,
    `espra_${role}_http_request_duration_seconds`,
    'time from a request\'s head to the end of its answer, by status class; WebSocket upgrades and requests the client left are not counted',
    () => stats().latency,
  )
  return registry
}

/** Node-level figures the parent reports as gauges. */
export interface NodeGauges {
  childrenAlive: number
  childrenWanted: number
  crashLooping: number
  seedConnected: boolean
  draining: boolean
}

export interface ParentMetrics {
  /** The parent's registry (`process="parent"`): the seed and role parents add their series here. */
  readonly registry: Registry
  /** Counts a child that exited without being asked to. */
  childCrashed(): void
  /** The exposition text: the parent's series, node gauges and every child's series labelled by child. */
  render(): Promise<string>
}

export function createParentMetrics(gauges: () => NodeGauges, children: () => Promise<ChildMetrics[]>): ParentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const gauge = (name: string, help: string, read: (g: NodeGauges) => number | boolean): void => gaugeFrom(registry, name, help, () => Number(read(gauges())))
  gauge('espra_node_children_alive', 'children listening on the public port', (g) => g.childrenAlive)
  gauge('espra_node_children_wanted', 'children this node runs (--children)', (g) => g.childrenWanted)
  gauge('espra_node_children_crash_looping', 'children crash-looping: restarted with backoff, not yet stable (the node is degraded)', (g) => g.crashLooping)
  gauge('espra_node_seed_connected', '1 while the node is connected to a seed', (g) => g.seedConnected)
  gauge('espra_node_draining', '1 while the node is draining before it stops', (g) => g.draining)
  const crashes = new Counter({ name: 'espra_node_child_crashes_total', help: 'children that exited without being asked to', registers: [registry] })

  return {
    registry,
    childCrashed: () => crashes.inc(),
    async render() {
      const [own, theirs] = await Promise.all([registry.getMetricsAsJSON() as unknown as Promise<MetricsJson>, children()])
      const parts: { labels: Labels; metrics: MetricsJson }[] = [{ labels: { process: 'parent' }, metrics: own }]
      // During a replacement two children of one slot could answer: the newer one stands for the slot.
      const bySlot = new Map<number, ChildMetrics>()
      for (const c of theirs) bySlot.set(c.child, c)
      const slots = [...bySlot.values()].sort((a, b) => a.child - b.child)
      parts.push({
        labels: { process: 'parent' },
        metrics: [{
          name: 'espra_node_child_pid', help: 'pid of the child serving each slot now (logs name children by pid)', type: 'gauge', aggregator: 'sum',
          values: slots.map((c) => ({ labels: { child: String(c.child) }, value: c.pid })),
        }],
      })
      for (const c of slots) parts.push({ labels: { child: String(c.child) }, metrics: c.metrics })
      return renderExposition(parts)
    },
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

/**
 * Prometheus text (format 0.0.4) of several registries' JSON, each part's
 * values given the part's labels: one HELP and TYPE per family (the first
 * part's), every family's samples together.
 */
export function renderExposition(parts: readonly { labels: Labels; metrics: MetricsJson }[]): string {
  const families = new Map<string, { help: string; type: string; lines: string[] }>()
  for (const part of parts) {
    for (const metric of part.metrics) {
      let family = families.get(metric.name)
      if (family === undefined) families.set(metric.name, (family = { help: metric.help, type: String(metric.type), lines: [] }))
      for (const v of metric.values) {
        const labels = { ...part.labels, ...v.labels } as Record<string, string | number | undefined>
        const pairs = Object.entries(labels).filter(([, value]) => value !== undefined).map(([k, value]) => `${k}="${escapeLabel(String(value))}"`)
        family.lines.push(`${v.metricName ?? metric.name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatValue(v.value)}`)
      }
    }
  }
  let out = ''
  for (const [name, f] of families) out += `# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n${f.lines.join('\n')}${f.lines.length > 0 ? '\n' : ''}`
  return out
}

/** Serves `GET /metrics` (404 otherwise) on the internal metrics address. */
export function serveMetrics(bind: string, port: number, metrics: ParentMetrics, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: 'not found' }))
      return
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: unknown) => {
        log.error({ err }, 'metrics: cannot render')
        res.writeHead(500).end()
      },
    )
  })
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(createError('ESPRA_ERR_NODE_LISTEN', { option: '--metrics-port', host: bind, port, reason: err.code ?? err.message })),
    )
    server.listen({ host: bind, port, exclusive: true }, () => resolve(server))
  })
}
