/**
 * The proxy parent's side of the node-wide per-address limits: one
 * node-limits.ts count for all children, fed by their reports
 * (limits-client.ts); every change of what to refuse goes to every child
 * (`proxy-limits-blocked`), a child that starts asks for all of it, a child
 * that exits gives its connections back, and the metrics show what the
 * parent holds (`espra_proxy_limit_*`, docs/metrics.md). A body that is not
 * one of the messages below is logged and refused, as role parents do.
 */
import { createError } from '../../lib/core/errors.js'
import { routeByTag, type TagHandlers } from '../../lib/process/ipc.js'
import { gaugeFrom } from '../../lib/process/metric-sources.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import type { LimitsBlockedMessage, LimitsReport, LimitsStateRequest } from './limits-client.js'
import { createNodeLimits, type Blocked } from './node-limits.js'

/** Pairs `[address, n]` from a child: anything else in a report is dropped, never counted. */
function pairs(value: unknown): [string, number][] {
  if (!Array.isArray(value)) return []
  return value.filter((p): p is [string, number] => Array.isArray(p) && typeof p[0] === 'string' && Number.isInteger(p[1]))
}

export function startLimitsParent(ctx: ParentContext): Handle {
  const { config, log, children } = ctx
  const limits = createNodeLimits(config.maxConnsPerAddress, config.maxRpsPerAddress)
  const tell = (b: Blocked | null): void => {
    if (b !== null) children.broadcast({ t: 'proxy-limits-blocked', ...b } satisfies LimitsBlockedMessage)
  }
  const unknown = (what: string, body: unknown, child: number) => {
    const tag = String((body as { t?: unknown } | null)?.t).slice(0, 40)
    log.error({ childPid: child, tag }, `proxy child ${child} sent an unknown ${what} '${tag}'`)
    return createError('ESPRA_ERR_IPC_UNKNOWN', { receiver: 'proxy parent', what, tag })
  }
  const requests: TagHandlers<LimitsStateRequest, number> = { 'proxy-limits-state': () => limits.state() }
  const messages: TagHandlers<LimitsReport, number> = {
    'proxy-limits-report': (msg, child) => tell(limits.report(child, pairs(msg.conns), pairs(msg.requests))),
  }
  const request = routeByTag(requests, (body, child) => {
    throw unknown('request', body, child)
  })
  const message = routeByTag(messages, (body, child) => void unknown('message', body, child))
  children.onRequest((child, body) => request(body, child))
  children.onMessage((child, body) => void message(body, child))
  children.onExit((child) => tell(limits.childGone(child)))

  gaugeFrom(ctx.metrics, 'espra_proxy_limit_connections', 'open client connections the node-wide --max-conns-per-address counts (all children)', () => limits.size().connections)
  gaugeFrom(ctx.metrics, 'espra_proxy_limit_blocked_addresses', 'client addresses the children refuse for the whole node: at --max-conns-per-address (connections), or out of --max-rps-per-address tokens (requests)', () => {
    const size = limits.size()
    return [
      { labels: { limit: 'connections' }, value: size.blockedConnections },
      { labels: { limit: 'requests' }, value: size.blockedRps },
    ]
  })
  const sweeper = setInterval(() => limits.sweep(), 1000).unref()
  return {
    close: () => {
      clearInterval(sweeper)
      return Promise.resolve()
    },
    destroy: () => clearInterval(sweeper),
  }
}
