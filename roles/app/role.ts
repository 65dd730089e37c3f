/** The app role: runs the application code of the current app build (docs/app-api.md). */
import { guardMaintenance } from '../../lib/http/maintenance-guard.js'
import type { Role } from '../../lib/process/role.js'
import { startAppNode } from './node.js'
import { startAppServer } from './server.js'

export const appRole: Role = {
  name: 'app',
  summary: 'runs the application code of the current app build, multi-process and multi-threaded',
  notYet: [
    'streaming request bodies',
  ],
  forks: true,
  // Builds on every (re)connect and change; the routing table so ctx.publish reaches each channel's home Live node.
  subscribe: (config) => ({ builds: true, routing: config.region }),
  parent: async (ctx) => startAppNode(ctx),
  child: (ctx) => {
    // Before the app's routes: planned maintenance answers them first (health checks stay as they are).
    guardMaintenance(ctx.app, { maintenance: () => ctx.state().maintenance, trustedProxies: ctx.config.trustedProxies })
    return startAppServer(ctx, Number(ctx.log.bindings()['child'] ?? 0))
  },
}
