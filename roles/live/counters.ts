/**
 * A Live child's counters, bumped where connections open and close and where
 * messages fan out, turned into the `espra_live_…` series only when
 * `/metrics` is scraped (see docs/metrics.md).
 */
import type { Registry } from 'prom-client'
import { counterFrom, gaugeFrom } from '../../lib/process/metric-sources.js'

export class LiveCounters {
  /** SSE streams and long-polls open now in this child. */
  sse = 0
  polls = 0
  /** Channel messages this child received from the hub, and the client deliveries they made (one per subscriber reached). */
  messages = 0
  deliveries = 0
  /** Slow consumers dropped: SSE streams that fell behind by more than --live-max-backpressure. */
  sseDrops = 0

  /** Registers the `espra_live_…` series of a child; `ws` and `channels` are read at scrape time. */
  register(registry: Registry, read: { ws(): number; channels(): { channels: number; subscriptions: number } }): void {
    gaugeFrom(registry, 'espra_live_connections', 'client connections open now, by transport', () => [
      { labels: { transport: 'ws' }, value: read.ws() },
      { labels: { transport: 'sse' }, value: this.sse },
      { labels: { transport: 'long-poll' }, value: this.polls },
    ])
    gaugeFrom(registry, 'espra_live_channels', 'channels this child\'s clients hold (subscribed, listening or present)', () => read.channels().channels)
    gaugeFrom(registry, 'espra_live_subscriptions', 'client subscriptions in this child: WebSocket subscriptions (pending ones included), SSE and long-poll listeners', () => read.channels().subscriptions)
    counterFrom(registry, 'espra_live_messages_total', 'channel messages this child received from the hub to fan out', () => this.messages)
    counterFrom(registry, 'espra_live_deliveries_total', 'messages delivered to clients: each message once per subscriber it reached', () => this.deliveries)
    counterFrom(registry, 'espra_live_slow_consumer_drops_total', 'clients dropped for falling behind, by transport (WebSockets over --live-max-backpressure are closed by uWS and not counted here)', () => [
      { labels: { transport: 'sse' }, value: this.sseDrops },
    ])
  }
}
