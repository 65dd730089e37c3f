/**
 * Metrics read from figures a node already keeps (plain counters, stats
 * objects, {@link StatusLatency} counts) at scrape time. Nothing here runs
 * per request: the hot path only bumps its own integers, and each source's
 * `read` turns them into Prometheus values when `/metrics` is asked for.
 *
 * A source is a plain object with prom-client's metric shape (`name`, `help`,
 * `type`, `get()`), so it registers into a prom-client `Registry` next to the
 * default process metrics.
 */
import type { Registry } from 'prom-client'
import { LATENCY_BOUNDS_MS, STATUS_CLASSES, type StatusLatency } from '../core/latency-histogram.js'

export type Labels = Readonly<Record<string, string | number>>

/** One value of a counter or gauge; labels name which one. */
export interface Sample {
  readonly labels?: Labels
  readonly value: number
}

/** One labelled histogram: cumulative-free counts per bucket (one more than the bounds: the overflow) and the sum. */
export interface HistogramSample {
  readonly labels?: Labels
  /** Counts per bucket, not cumulative; the last one counts what exceeds every bound. */
  readonly counts: readonly number[]
  readonly sum: number
}

/** One value as prom-client's `getMetricsAsJSON()` gives it (histogram parts name themselves in `metricName`). */
export interface MetricValueJson {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

/** One metric family as prom-client's `getMetricsAsJSON()` gives it. */
export interface MetricJson {
  name: string
  help: string
  type: string
  aggregator?: string
  values: MetricValueJson[]
}


function register(registry: Registry, name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => MetricValueJson[] | Promise<MetricValueJson[]>): void {
  const metric = { name, help, type, aggregator: 'sum', get: async (): Promise<MetricJson> => ({ name, help, type, aggregator: 'sum', values: await values() }) }
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0])
}

/** What a counter or gauge reads: one value, labelled values, or either later (a store asked at scrape time). */
export type Read = () => number | readonly Sample[] | Promise<number | readonly Sample[]>

function samples(read: Read): () => Promise<MetricValueJson[]> {
  return async () => {
    const got = await read()
    if (typeof got === 'number') return [{ value: got, labels: {} }]
    return got.map((s) => ({ value: s.value, labels: { ...s.labels } }))
  }
}

/** A counter (name ends in `_total`) read from a figure that only grows while the process lives. */
export function counterFrom(registry: Registry, name: string, help: string, read: Read): void {
  register(registry, name, help, 'counter', samples(read))
}

/** A gauge read at scrape time. */
export function gaugeFrom(registry: Registry, name: string, help: string, read: Read): void {
  register(registry, name, help, 'gauge', samples(read))
}

/**
 * A histogram (name ends in `_seconds` for durations) from per-bucket counts
 * over `bounds` (upper bounds, inclusive, in the unit of the name).
 */
export function histogramFrom(registry: Registry, name: string, help: string, bounds: readonly number[], read: () => readonly HistogramSample[]): void {
  const les = [...bounds.map(String), '+Inf']
  register(registry, name, help, 'histogram', () => {
    const values: MetricValueJson[] = []
    for (const h of read()) {
      let total = 0
      for (let i = 0; i < les.length; i++) {
        total += h.counts[i] ?? 0
        values.push({ metricName: `${name}_bucket`, labels: { ...h.labels, le: les[i]! }, value: total })
      }
      values.push({ metricName: `${name}_sum`, labels: { ...h.labels }, value: h.sum })
      values.push({ metricName: `${name}_count`, labels: { ...h.labels }, value: total })
    }
    return values
  })
}

/** {@link LATENCY_BOUNDS_MS} in seconds, the bounds of every latency histogram from {@link StatusLatency}. */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = LATENCY_BOUNDS_MS.map((ms) => ms / 1000)

/**
 * A `_seconds` histogram with a `status` label (2xx, 3xx, 4xx, 5xx; 1xx
 * only once there is one) from a {@link StatusLatency}: 2xx to 5xx exist
 * from the start, so a rate over them never starts from a missing series.
 */
export function statusLatencyHistogram(registry: Registry, name: string, help: string, read: () => StatusLatency | undefined): void {
  const per = LATENCY_BOUNDS_MS.length + 1
  histogramFrom(registry, name, help, LATENCY_BOUNDS_SECONDS, () => {
    const latency = read()
    if (latency === undefined) return []
    const out: HistogramSample[] = []
    for (let c = 0; c < STATUS_CLASSES.length; c++) {
      const counts = latency.counts.slice(c * per, (c + 1) * per)
      if (c === 0 && counts.every((n) => n === 0)) continue
      out.push({ labels: { status: STATUS_CLASSES[c]! }, counts, sum: latency.sumsMs[c]! / 1000 })
    }
    return out
  })
}
