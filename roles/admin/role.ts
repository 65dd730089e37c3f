/**
 * The admin role: the operator's HTTP API over the seed (docs/admin-api.md)
 * and the web dashboard that calls it (docs/dashboard.md).
 * Children serve `/api/*` and `/dashboard/` on the public port (roles/admin/api-server.ts),
 * each with its own admin link to the seed; the parent counts failed
 * authentications for the whole node (roles/admin/api-auth-limit.ts) and
 * competes for the alert engine lease; the holder runs the prober and alert
 * engine (roles/admin/alerts/, docs/alerts.md).
 */
import { createError } from '../../lib/core/errors.js'
import type { Role } from '../../lib/process/role.js'
import { AuthFailureCounter, type AuthBlockedMessage, type AuthFailedRequest } from './api-auth-limit.js'
import { startAdminApi } from './api-server.js'

export const adminRole: Role = {
  name: 'admin',
  summary: 'operator HTTP API over the seed (docs/admin-api.md) and web dashboard at /dashboard/ (docs/dashboard.md): nodes, health, builds, rollbacks, drain, maintenance, rolling restarts, tasks, vhosts, tokens, mail, alerts, cluster events, audit log; probes every node and sends alerts (docs/alerts.md)',
  notYet: [
    'canary pushes, maintenance host and address lists, and Live token patterns from the dashboard forms (the API takes them all)',
  ],
  forks: true,
  // The parent counts failed authentications for every child, and runs monitoring: it competes for the alert engine lease, and while it holds it runs the prober and the engine (one per cluster, whatever its children and the number of admin nodes).
  async parent(ctx) {
    const counter = new AuthFailureCounter(ctx.config.adminAuthFailures, ctx.config.adminAuthWindow)
    const sweep = setInterval(() => counter.sweep(Date.now()), ctx.config.adminAuthWindow)
    sweep.unref()
    ctx.children.onRequest((_child, body) => {
      const m = body as AuthFailedRequest
      if (m?.k !== 'auth-failed' || typeof m.address !== 'string') throw createError('ESPRA_ERR_INTERNAL', { reason: 'unknown admin IPC request' })
      const until = counter.fail(m.address, Date.now())
      if (until !== null) {
        const blocked: AuthBlockedMessage = { k: 'auth-blocked', address: m.address, until }
        ctx.children.broadcast(blocked)
      }
      return { until }
    })
    const monitor = ctx.config.alerts ? await import('./alerts/monitor.js').then((m) => m.startAlertMonitor({ config: ctx.config, log: ctx.log })) : null
    return {
      close: async () => {
        clearInterval(sweep)
        await monitor?.close()
      },
      destroy: () => {
        clearInterval(sweep)
        monitor?.destroy()
      },
    }
  },
  child: (ctx) => startAdminApi(ctx),
}
