/**
 * The live role: real-time clients (WebSocket, SSE, long-poll, HTTP) and
 * channels with ordered history, recovery and presence. Children hold the
 * client connections; what homes the channels is `--live-homes`: the parent,
 * the node's one hub (`node`, roles/live/node.ts), or every child, a Live
 * peer of its own (`children`: ./child-peer.ts), the parent then only
 * reporting its children's peers to the seed.
 * Protocol: docs/live-protocol.md.
 */
import type { Role } from '../../lib/process/role.js'
import { asDrainOrder } from '../../lib/transport/drain-order.js'
import { createLiveChild } from './child.js'
import { reportChildPeers, startChildPeer } from './child-peer.js'
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
  parent: (ctx) => ctx.config.liveHomes === 'children'
    ? Promise.resolve(reportChildPeers(ctx))
    : startLiveNode({ ...ctx, self: ctx.config.nodeId, linkPorts: [ctx.config.port + ctx.config.liveLinkOffset], routing: null, child: false }),
  async child(ctx) {
    const peer = ctx.config.liveHomes === 'children' ? await startChildPeer(ctx) : null
    const live = createLiveChild(peer === null ? ctx : { ...ctx, parent: peer.clients })
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
    return {
      drain: end,
      async close() {
        end()
        // Its channels go to the homes they have without it (peer.close: out of the table first, then handed over).
        await peer?.close()
      },
      destroy(err) {
        end()
        peer?.destroy(err)
      },
    }
  },
}
