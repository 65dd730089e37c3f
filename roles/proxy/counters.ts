/**
 * A proxy child's counters: plain integers and a {@link StatusLatency} that
 * connections bump through these methods, turned into the `espra_proxy_…`
 * series only when `/metrics` is scraped (see docs/metrics.md).
 */
import type { Registry } from 'prom-client'
import { StatusLatency } from '../../lib/core/latency-histogram.js'
import { counterFrom, gaugeFrom, statusLatencyHistogram } from '../../lib/process/metric-sources.js'

/** Why the proxy answered a request itself, with the status it answers. */
export const QUICK_REASONS = {
  bad_request: 400,
  unknown_host: 404,
  ws_version: 426,
  too_many_connections: 429,
  too_many_requests: 429,
  too_large: 431,
  too_many_headers: 431,
  not_implemented: 501,
  upstream_failed: 502,
  no_table: 503,
  no_node: 503,
  node_gone: 503,
  maintenance: 503,
  redirect: 308,
} as const

export type QuickReason = keyof typeof QUICK_REASONS

export class ProxyCounters {
  /** Request heads read, forwarded or answered here (rate limiting counts once per head, a head read again after waiting is not counted again). */
  requests = 0
  /** Requests forwarded and not yet answered. */
  inflight = 0
  /** Upgraded connections streaming both ways now. */
  tunnels = 0
  /** Forwarded requests: from the head going to a Live node to the end of its answer, by status class. */
  readonly latency = new StatusLatency()
  /** Connections to Live nodes opened since start, and open now. */
  upstreamOpened = 0
  upstreamOpen = 0
  /** Live node connections that failed mid-exchange (closed early, unparsable answer). */
  upstreamFailures = 0
  private readonly quick: Record<QuickReason, number>
  private readonly byAnswer = new Map<Buffer, QuickReason>()

  constructor(answers: Readonly<Partial<Record<QuickReason, Buffer>>>) {
    this.quick = Object.fromEntries(Object.keys(QUICK_REASONS).map((r) => [r, 0])) as Record<QuickReason, number>
    for (const [reason, answer] of Object.entries(answers)) if (answer !== undefined) this.byAnswer.set(answer, reason as QuickReason)
  }

  /** A quick answer went out: by its reason, or by which prebuilt answer it is (others, such as health answers, are not counted). */
  quickAnswer(answer: Buffer, reason?: QuickReason): void {
    const r = reason ?? this.byAnswer.get(answer)
    if (r !== undefined) this.quick[r]++
  }

  requestRead(): void {
    this.requests++
  }

  forwarded(): void {
    this.inflight++
  }

  /** `n` forwarded requests need no answer any more: answered, or given up with their connection. */
  settled(n = 1): void {
    this.inflight -= n
  }

  /** A forwarded upgrade was answered 101: its request is settled, and the connection is a tunnel now. */
  tunnelOpened(): void {
    this.inflight--
    this.tunnels++
  }

  tunnelClosed(): void {
    this.tunnels--
  }

  upstreamOpening(): void {
    this.upstreamOpened++
    this.upstreamOpen++
  }

  upstreamClosed(): void {
    this.upstreamOpen--
  }

  /** Registers the `espra_proxy_…` series; `clients` is read at scrape time. */
  register(registry: Registry, read: { clients(): number }): void {
    statusLatencyHistogram(registry, 'espra_proxy_upstream_request_duration_seconds', 'requests forwarded to a Live node: from the head sent to the end of its answer, by status class (WebSocket and other upgrades, and quick answers, are not in it)', () => this.latency)
    counterFrom(registry, 'espra_proxy_quick_answers_total', 'requests the proxy answered itself, by reason and status, never reaching a Live node', () =>
      (Object.keys(QUICK_REASONS) as QuickReason[]).map((reason) => ({ labels: { reason, status: String(QUICK_REASONS[reason]) }, value: this.quick[reason] })),
    )
    counterFrom(registry, 'espra_proxy_upstream_connections_opened_total', 'connections opened to Live nodes', () => this.upstreamOpened)
    gaugeFrom(registry, 'espra_proxy_upstream_connections', 'connections to Live nodes open now', () => this.upstreamOpen)
    counterFrom(registry, 'espra_proxy_upstream_failures_total', 'Live node connections that failed mid-exchange (the client got a 502 or 503, or was cut)', () => this.upstreamFailures)
    gaugeFrom(registry, 'espra_proxy_client_connections', 'client connections open now', read.clients)
    gaugeFrom(registry, 'espra_proxy_tunnels', 'upgraded connections (WebSocket) streaming both ways now', () => this.tunnels)
  }
}
