/**
 * Prometheus metrics. Each child keeps its own registry; the parent asks every
 * child for `getMetricsAsJSON()` over IPC, merges them with
 * `AggregatorRegistry.aggregate` (summing counters across children) next to
 * its own process metrics and node gauges, and serves the text on the
 * internal metrics port.
 */
import { createServer, type Server } from 'node:http'
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import { EspraError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { HttpServerStats } from '../http/server.js'

/** One child's metrics as sent over IPC. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[]

/**
 * A child's registry. The request figures are read from the server's plain
 * counters at scrape time, so serving a request costs no metric update.
 */
export function createChildRegistry(stats: () => HttpServerStats): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, labels: { process: 'children' } })
  new Counter({
    name: 'espra_http_requests_total',
    help: 'HTTP requests received by the children',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(stats().requests)
    },
  })
  new Gauge({
    name: 'espra_http_requests_in_flight',
    help: 'HTTP requests whose response has not finished',
    registers: [registry],
    collect() {
      this.set(stats().inflight)
    },
  })
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
  /** Counts a child that exited without being asked to. */
  childCrashed(): void
  /** The exposition text: parent process metrics, node gauges and the children's merged metrics. */
  render(): Promise<string>
}

export function createParentMetrics(gauges: () => NodeGauges, children: () => Promise<MetricsJson[]>): ParentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, labels: { process: 'parent' } })
  const gauge = (name: string, help: string, read: (g: NodeGauges) => number | boolean): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(Number(read(gauges())))
      },
    })
  }
  gauge('espra_node_children_alive', 'children listening on the public port', (g) => g.childrenAlive)
  gauge('espra_node_children_wanted', 'children this node runs (--children)', (g) => g.childrenWanted)
  gauge('espra_node_children_crash_looping', 'children crash-looping: restarted with backoff, not yet stable (the node is degraded)', (g) => g.crashLooping)
  gauge('espra_node_seed_connected', '1 while the node is connected to a seed', (g) => g.seedConnected)
  gauge('espra_node_draining', '1 while the node is draining before it stops', (g) => g.draining)
  const crashes = new Counter({ name: 'espra_node_child_crashes_total', help: 'children that exited without being asked to', registers: [registry] })

  return {
    childCrashed: () => crashes.inc(),
    async render() {
      const [own, theirs] = await Promise.all([registry.getMetricsAsJSON(), children()])
      // Series are grouped by name and labels: the parent's `process="parent"` stays apart from the children's sum.
      return AggregatorRegistry.aggregate([own as MetricsJson, ...theirs]).metrics()
    },
  }
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
      reject(new EspraError('ESPRA_ERR_LISTEN', `--metrics-port: cannot listen on ${bind}:${port} (${err.code ?? err.message})`, { option: '--metrics-port', port })),
    )
    server.listen({ host: bind, port, exclusive: true }, () => resolve(server))
  })
}
