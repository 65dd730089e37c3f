/**
 * The admin role: the operator's HTTP API over the seed (docs/admin-api.md).
 * Children serve `/api/*` on the public port (roles/admin/api-server.ts),
 * each with its own admin link to the seed; the parent counts failed
 * authentications for the whole node (roles/admin/api-auth-limit.ts).
 */
import { EspraError } from '../../lib/core/errors.js'
import type { Role } from '../../lib/process/role.js'
import { AuthFailureCounter, type AuthBlockedMessage, type AuthFailedRequest } from './api-auth-limit.js'
import { startAdminApi } from './api-server.js'

export const adminRole: Role = {
  name: 'admin',
  summary: 'operator HTTP API over the seed (docs/admin-api.md): nodes, health, builds, rollbacks, drain, maintenance, rolling restarts, tasks, vhosts, tokens, mail, cluster events, audit log',
  notYet: [
    'operator web dashboard',
    'alerts',
    'push-build over HTTP (POST /api/builds answers 501; use espra-node admin push-build)',
  ],
  forks: true,
  async parent(ctx) {
    const counter = new AuthFailureCounter(ctx.config.adminAuthFailures, ctx.config.adminAuthWindow)
    const sweep = setInterval(() => counter.sweep(Date.now()), ctx.config.adminAuthWindow)
    sweep.unref()
    ctx.children.onRequest((_child, body) => {
      const m = body as AuthFailedRequest
      if (m?.k !== 'auth-failed' || typeof m.address !== 'string') throw new EspraError('ESPRA_ERR_INTERNAL', 'unknown admin IPC request')
      const until = counter.fail(m.address, Date.now())
      if (until !== null) {
        const blocked: AuthBlockedMessage = { k: 'auth-blocked', address: m.address, until }
        ctx.children.broadcast(blocked)
      }
      return { until }
    })
    const stop = (): void => clearInterval(sweep)
    return { close: async () => stop(), destroy: stop }
  },
  child: (ctx) => startAdminApi(ctx),
}
