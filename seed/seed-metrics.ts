/**
 * The seed's series (see docs/metrics.md): registered nodes by role and
 * health, meta-port connections, the embedded task queues' depth, and how
 * long each datastore op takes. Read from the seed's own structures when
 * `/metrics` is scraped; the only per-op work is timing the `ds.*` handlers.
 */
import type { Registry as MetricsRegistry } from 'prom-client'
import { ROLE_NAMES } from '../lib/core/config.js'
import { counterFrom, gaugeFrom, histogramFrom, type Sample } from '../lib/process/metric-sources.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import type { Registry } from './registry.js'

const HEALTHS = ['ok', 'degraded', 'draining', 'suspect'] as const

/** Datastore ops are mostly sub-millisecond: buckets from 0.1 ms to 2.5 s. */
const OP_BOUNDS_SECONDS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Durations per op: counts per bucket of {@link OP_BOUNDS_SECONDS} plus the overflow, and their sum. */
export class OpLatency {
  private readonly ops = new Map<string, { counts: number[]; sum: number; errors: number }>()

  record(op: string, seconds: number, failed: boolean): void {
    let o = this.ops.get(op)
    if (o === undefined) this.ops.set(op, (o = { counts: new Array<number>(OP_BOUNDS_SECONDS.length + 1).fill(0), sum: 0, errors: 0 }))
    let b = 0
    while (b < OP_BOUNDS_SECONDS.length && seconds > OP_BOUNDS_SECONDS[b]!) b++
    o.counts[b]!++
    o.sum += seconds
    if (failed) o.errors++
  }

  /** The same handlers, each one timed under its op name without the `ds.` prefix. */
  timed(handlers: readonly [string, RequestHandler<MetaPeer>][]): [string, RequestHandler<MetaPeer>][] {
    return handlers.map(([name, handler]) => {
      const op = name.startsWith('ds.') ? name.slice(3) : name
      const wrapped: RequestHandler<MetaPeer> = (body, peer) => {
        const start = performance.now()
        const done = (failed: boolean) => this.record(op, (performance.now() - start) / 1000, failed)
        try {
          const result = handler(body, peer)
          if (result instanceof Promise) return result.then((v: unknown) => (done(false), v), (err: unknown) => (done(true), Promise.reject(err)))
          done(false)
          return result
        } catch (err) {
          done(true)
          throw err
        }
      }
      return [name, wrapped]
    })
  }

  entries(): [string, { counts: number[]; sum: number; errors: number }][] {
    return [...this.ops]
  }
}

export interface SeedMetricSources {
  readonly nodes: Registry
  readonly peers: () => ReadonlySet<MetaPeer>
  readonly queues: Readonly<Record<'app' | 'mail', { counts(): Promise<{ ready: number; delayed: number; leased: number; dead: number }> }>>
  readonly datastore: OpLatency
  /** Inbound mail the sweep removed (seed/mail-inbound-sweep.ts). */
  readonly inboundSweep: Readonly<{ handled: number; failed: number; dedupe: number }>
  /** Outbound mail and expired suppressions the sweep removed (seed/mail-outbound-sweep.ts). */
  readonly outboundSweep: Readonly<{ delivered: number; failed: number; dropped: number; suppression: number }>
  /** The task-queue ops (`tasks.*`, `mailq.*`), timed under their full names. */
  readonly taskOps: OpLatency
}

export function registerSeedMetrics(metrics: MetricsRegistry, s: SeedMetricSources): void {
  gaugeFrom(metrics, 'espra_seed_nodes', 'registered nodes by role and health (suspect: heartbeats missing, not yet evicted)', () => {
    const counts = new Map<string, number>()
    for (const r of s.nodes.records()) counts.set(`${r.role}/${r.health}`, (counts.get(`${r.role}/${r.health}`) ?? 0) + 1)
    const out: Sample[] = []
    for (const role of ROLE_NAMES) for (const health of HEALTHS) out.push({ labels: { role, health }, value: counts.get(`${role}/${health}`) ?? 0 })
    return out
  })
  gaugeFrom(metrics, 'espra_seed_meta_connections', 'authenticated meta-port connections, by kind (node or admin)', () => {
    let node = 0
    let admin = 0
    for (const p of s.peers()) {
      if (p.kind === 'node') node++
      else if (p.kind === 'admin') admin++
    }
    return [{ labels: { kind: 'node' }, value: node }, { labels: { kind: 'admin' }, value: admin }]
  })
  gaugeFrom(metrics, 'espra_seed_tasks', 'tasks in the embedded queues by queue (app tasks, outbound mail) and state; dead: out of attempts', async () => {
    const out: Sample[] = []
    for (const queue of ['app', 'mail'] as const) {
      // A queue closing under a scrape (the seed stopping) leaves its figures out rather than failing the whole scrape.
      const c = await s.queues[queue].counts().catch(() => null)
      if (c === null) continue
      for (const state of ['ready', 'delayed', 'leased', 'dead'] as const) out.push({ labels: { queue, state }, value: c[state] })
    }
    return out
  })
  histogramFrom(metrics, 'espra_seed_datastore_op_duration_seconds', 'datastore ops served on the meta port (ds.*), by op: time in the embedded store', OP_BOUNDS_SECONDS, () =>
    s.datastore.entries().map(([op, o]) => ({ labels: { op }, counts: o.counts, sum: o.sum })),
  )
  counterFrom(metrics, 'espra_seed_mail_inbound_swept_total', 'inbound messages the sweep removed after their retention, by state (handled, failed), and stray dedupe records (dedupe)', () =>
    (['handled', 'failed', 'dedupe'] as const).map((state) => ({ labels: { state }, value: s.inboundSweep[state] })))
  counterFrom(metrics, 'espra_seed_mail_outbound_swept_total', 'finished outbound messages the sweep removed after their retention, by status (delivered, failed, dropped), and expired suppressions (suppression)', () =>
    (['delivered', 'failed', 'dropped', 'suppression'] as const).map((state) => ({ labels: { state }, value: s.outboundSweep[state] })))
  counterFrom(metrics, 'espra_seed_datastore_op_errors_total', 'datastore ops that failed, by op', () => s.datastore.entries().map(([op, o]) => ({ labels: { op }, value: o.errors })))
  // With several seeds on PostgreSQL, nodes spread these over the seeds: each seed counts what it served.
  const taskLabels = (name: string) => ({ queue: name.slice(0, name.indexOf('.')), op: name.slice(name.indexOf('.') + 1) })
  histogramFrom(metrics, 'espra_seed_task_op_duration_seconds', 'task-queue ops served on the meta port (tasks.*, mailq.*), by queue and op; a waiting lease counts its wait', OP_BOUNDS_SECONDS, () =>
    s.taskOps.entries().map(([name, o]) => ({ labels: taskLabels(name), counts: o.counts, sum: o.sum })),
  )
  counterFrom(metrics, 'espra_seed_task_op_errors_total', 'task-queue ops that failed, by queue and op', () => s.taskOps.entries().map(([name, o]) => ({ labels: taskLabels(name), value: o.errors })))
}
