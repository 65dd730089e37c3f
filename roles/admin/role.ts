/** The admin role: the operator's dashboard and HTTP API over the seed. */
import type { Role } from '../../lib/process/role.js'

export const adminRole: Role = {
  name: 'admin',
  summary: 'operator dashboard and HTTP API over the seed; probes every node and sends alerts (docs/alerts.md)',
  notYet: [
    'operator web dashboard',
    'HTTP API over the seed: nodes, health, builds, deploys, drain, maintenance, alerts',
    'alerts: seed leader changes (seeds do not elect a leader yet)',
  ],
  forks: true,
  // Monitoring runs in the parent: one prober and one alert engine per admin node, whatever its children.
  parent: async (ctx) => {
    if (!ctx.config.alerts) return { close: async () => {}, destroy: () => {} }
    const { startAlertMonitor } = await import('./alerts/monitor.js')
    return startAlertMonitor({ config: ctx.config, log: ctx.log })
  },
}
