/**
 * The proxy role: the edge for the live hosts. It subscribes to its region's
 * routing table, which every child keeps (and shows in its health answer).
 */
import type { Role } from '../../lib/process/role.js'

export const proxyRole: Role = {
  name: 'proxy',
  summary: 'edge for <region>.live.<domain>: routes each request to the Live node the seed\'s routing table picks',
  notYet: [
    'mapping each request to a routing key (channel or session from the path, a cookie, or a header)',
    'picking the Live node by rendezvous hashing over the routing table',
    'streaming requests both ways to the Live node (HTTP, WebSocket, SSE, long-poll)',
    'optional TLS termination (8443)',
  ],
  forks: true,
  // Every (re)connect resubscribes; the seed answers with the current table at once.
  subscribe: (config) => ({ routing: config.region }),
}
