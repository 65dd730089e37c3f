/** The live role: real-time clients and the notification hub for other nodes. */
import type { Role } from '../../lib/process/role.js'

export const liveRole: Role = {
  name: 'live',
  summary: 'real-time: WebSocket, SSE and long-poll clients, channels, presence, notifications',
  notYet: [
    'WebSocket, SSE and long-poll client endpoints',
    'channels with pub/sub, ordered history and recovery',
    'presence',
    'notification hub for other nodes (upload progress, file and cache invalidation, build updates)',
  ],
  forks: true,
}
