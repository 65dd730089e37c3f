/**
 * The proxy role: the edge for the live hosts (`<region>.live.<domain>`).
 * Each child serves the node's shared public socket with a raw HTTP/1.1
 * front (./core.ts, ./connection.ts): quick answers for what must not reach
 * a Live node, a routing key per request, rendezvous hashing over the seed's
 * routing table for its region, then bytes streamed both ways.
 */
import type { RoutingTable } from '../../lib/core/node-state.js'
import type { Role } from '../../lib/process/role.js'
import { startProxy } from './core.js'
import { createLimits } from './limits.js'
import { createLimitsClient } from './limits-client.js'
import { startLimitsParent } from './limits-parent.js'

function isRoutingTable(body: unknown): body is RoutingTable {
  const t = body as Partial<RoutingTable> | null
  return typeof t === 'object' && t !== null && typeof t.version === 'number' && Array.isArray(t.nodes)
}

export const proxyRole: Role = {
  name: 'proxy',
  summary: 'edge for <region>.live.<domain>: routes each request to the Live node the seed\'s routing table picks and streams it both ways',
  notYet: [],
  forks: true,
  // With TLS the parent binds --tls-port too; children get it as extraFds[0].
  listenPorts: (config) => (config.tlsCert !== null ? [{ port: config.tlsPort, option: '--tls-port' }] : []),
  // Every (re)connect resubscribes; the seed answers with the current table at once.
  subscribe: (config) => ({ routing: config.region }),
  // Per-address limits for the whole node: the parent sums what the children report (limits-parent.ts).
  parent: (ctx) => Promise.resolve(startLimitsParent(ctx)),
  async listen(ctx) {
    // Tables pushed while the listener starts are kept, not lost: the latest one applies once it runs.
    let latest: RoutingTable | null = ctx.state().routing
    let apply: ((table: RoutingTable) => void) | null = null
    let proxy: Awaited<ReturnType<typeof startProxy>> | null = null
    ctx.onPush((push) => {
      // The parent put the pushed state in the node state before relaying the push.
      if (push.op === 'maintenance') proxy?.setMaintenance(ctx.state().maintenance ?? null)
      if (push.op !== 'routing' || !isRoutingTable(push.body) || push.body.version === latest?.version) return
      latest = push.body
      apply?.(push.body)
    })
    const tlsFd = ctx.extraFds[0]
    const { maxConnsPerAddress: maxConns, maxRpsPerAddress: maxRps } = ctx.config
    const limits = createLimitsClient({ parent: ctx.parent, local: createLimits(maxConns, maxRps), maxConns, maxRps })
    proxy = await startProxy({ config: ctx.config, log: ctx.log, health: ctx.health, routing: latest, limits }, { fd: ctx.fd }, tlsFd === undefined ? undefined : { fd: tlsFd })
    proxy.registerMetrics(ctx.metrics)
    apply = (table) => proxy.setRouting(table)
    const now = latest ?? ctx.state().routing
    if (now !== null) proxy.setRouting(now)
    proxy.setMaintenance(ctx.state().maintenance ?? null)
    return proxy
  },
}
