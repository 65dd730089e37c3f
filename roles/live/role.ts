/**
 * The live role: real-time clients (WebSocket, SSE, long-poll, HTTP) and
 * channels with ordered history, recovery and presence. The parent is the
 * node's hub (roles/live/node.ts); children hold the client connections.
 * Protocol: docs/live-protocol.md.
 */
import type { Role } from '../../lib/process/role.js'
import { asDrainOrder } from '../../lib/transport/drain-order.js'
import { createLiveChild } from './child.js'
import { addHttp } from './http.js'
import { startLiveNode } from './node.js'
import { addWebSocket } from './ws.js'

/** How long a drained Live child spreads its WebSocket clients' reconnect hints over. */
const DRAIN_RECONNECT_SPREAD_MS = 5000

export const liveRole: Role = {
  name: 'live',
  summary: 'real-time: WebSocket, SSE and long-poll clients, channels, presence, notifications',
  notYet: [
    'file and cache invalidation and build updates through the hub (fileservers publish upload progress through lib/live/publisher.ts; invalidation and builds travel as seed pushes today)',
  ],
  forks: true,
  // Homes are picked over the region's routing table; every (re)connect resubscribes.
  subscribe: (config) => ({ routing: config.region }),
  parent: (ctx) => startLiveNode(ctx),
  async child(ctx) {
    const live = createLiveChild(ctx)
    const ws = addWebSocket(live)
    const http = addHttp(live)
    live.counters.register(ctx.metrics, { ws: ws.open, channels: live.channelStats })
    // Drained (admin drain): the node is out of routing, so this child's WebSocket clients are told to reconnect
    // (close 1012), spread over a few seconds; they land on another Live node and recover by sequence.
    ctx.onPush((push) => {
      if (push.op === 'drain' && asDrainOrder((push.body as { order?: unknown } | null)?.order) !== null) ws.reconnectSpread(DRAIN_RECONNECT_SPREAD_MS)
    })
    // Told to drain, the child ends its WebSockets, SSE streams and long polls at once (they are tracked,
    // so the HTTP drain would wait for them); clients reconnect elsewhere and recover by sequence.
    const end = (): void => {
      ws.close()
      http.close()
    }
    return { drain: end, close: async () => end(), destroy: end }
  },
}
