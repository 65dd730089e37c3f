/**
 * The proxy of one child: a raw TCP listener (the node's shared public
 * socket), the routing table as a rendezvous table, the quick answers built
 * once, per-address limits, and the bookkeeping drain needs. Connections
 * (./connection.ts) do the per-request work.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import type { RoutingTable } from '../../lib/core/node-state.js'
import type { HttpServerStats } from '../../lib/http/server.js'
import { Rendezvous } from '../../lib/routing/rendezvous.js'
import { errorResponse, jsonResponse } from './answers.js'
import { ClientConnection } from './connection.js'
import { createLimits, type Limits } from './limits.js'
import { createHeadSpec, type HeadSpec } from './request-head.js'
import { compileRouteKeys, type RouteKeys } from './route-keys.js'

export type RoutingNode = RoutingTable['nodes'][number]

const HEALTH_PATH = '/_espra/health'
/** A keep-alive client connection idle this long is closed (longer than an ELB's default 60 s idle timeout, as AWS advises). */
const IDLE_TIMEOUT_S = 75
/** A request head must arrive within this long (slow-loris). */
const HEAD_TIMEOUT_S = 10

/** What every connection of a child shares. */
export interface ProxyCore {
  /** Seconds since start, updated once a second: a cheap clock for idle checks. */
  tick: number
  requests: number
  inflight: number
  tunnels: number
  draining: boolean
  table: Rendezvous<RoutingNode> | null
  readonly scheme: 'http' | 'https'
  readonly maxHeaderSize: number
  readonly headSpec: HeadSpec
  readonly routeKeys: RouteKeys
  readonly limits: Limits
  readonly answers: Readonly<Record<'badRequest' | 'tooLarge' | 'tooManyConnections' | 'tooManyRequests' | 'unknownHost' | 'noTable' | 'noNode' | 'upstreamFailed' | 'nodeGone', Buffer>>
  isHealthPath(target: string): boolean
  healthAnswer(headOnly: boolean): Buffer
  servesHost(host: string | undefined): boolean
  forget(conn: ClientConnection): void
}

export interface ProxyOptions {
  readonly config: NodeConfig
  readonly log: Logger
  /** Health status and body, as every node answers them. */
  health(): { status: number; body: Record<string, unknown> }
  /** The routing table to start with (the parent's latest), if any. */
  readonly routing: RoutingTable | null
}

export interface Proxy {
  readonly port: number
  setRouting(table: RoutingTable | null): void
  stats(): HttpServerStats
  /** Stops accepting; idle connections close now, busy ones after what they are owed; cut at the deadline. */
  drain(timeoutMs: number): Promise<{ cut: number }>
  close(): Promise<void>
  destroy(): void
}

/** The live host this proxy serves, e.g. `us-1.live.localhost`. */
export function liveHost(config: NodeConfig): string {
  return `${config.region}.live.${config.liveDomain}`
}

/**
 * Starts a child's proxy on `listen`: `{fd}` (the node's shared socket) or
 * `{host, port}` (tests and single-process use).
 */
export async function startProxy(opts: ProxyOptions, listen: { fd: number } | { host: string; port: number }): Promise<Proxy> {
  const { config, log } = opts
  const host = liveHost(config)
  const routeKeys = compileRouteKeys(config.routeKeys)
  const connections = new Set<ClientConnection>()
  let drained: Promise<{ cut: number }> | null = null

  const core: ProxyCore = {
    tick: 0,
    requests: 0,
    inflight: 0,
    tunnels: 0,
    draining: false,
    table: null,
    scheme: 'http',
    maxHeaderSize: config.maxHeaderSize,
    headSpec: createHeadSpec(routeKeys.headerNames),
    routeKeys,
    limits: createLimits(config.maxConnsPerAddress, config.maxRpsPerAddress),
    answers: {
      badRequest: errorResponse('ESPRA_ERR_PROXY_BAD_REQUEST', undefined, { close: true }),
      tooLarge: errorResponse('ESPRA_ERR_PROXY_HEADERS_TOO_LARGE', `request head larger than ${config.maxHeaderSize} bytes`, { close: true }),
      tooManyConnections: errorResponse('ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS', `more than ${config.maxConnsPerAddress} connections from this address`, { close: true }),
      tooManyRequests: errorResponse('ESPRA_ERR_PROXY_TOO_MANY_REQUESTS', `more than ${config.maxRpsPerAddress} requests per second from this address`, { close: true, headers: { 'Retry-After': '1' } }),
      unknownHost: errorResponse('ESPRA_ERR_HTTP_NOT_FOUND', `unknown host: this proxy serves ${host}`),
      noTable: errorResponse('ESPRA_ERR_PROXY_NO_ROUTING_TABLE', 'no routing table from the seed yet; retry shortly', { close: true, headers: { 'Retry-After': '1' } }),
      noNode: errorResponse('ESPRA_ERR_PROXY_NO_LIVE_NODE', `no Live node in region ${config.region}; retry shortly`, { close: true, headers: { 'Retry-After': '1' } }),
      upstreamFailed: errorResponse('ESPRA_ERR_PROXY_UPSTREAM', undefined, { close: true }),
      nodeGone: errorResponse('ESPRA_ERR_PROXY_NODE_GONE', undefined, { close: true, headers: { 'Retry-After': '0' } }),
    },
    isHealthPath: (target) => target === HEALTH_PATH || (target.startsWith(HEALTH_PATH) && target.charCodeAt(HEALTH_PATH.length) === 0x3f),
    healthAnswer(headOnly) {
      const { status, body } = opts.health()
      const answer = jsonResponse(status, body)
      return headOnly ? answer.subarray(0, answer.indexOf('\r\n\r\n') + 4) : answer
    },
    servesHost(value) {
      if (value === undefined) return false
      // Fast path: exactly the live host (any port); otherwise compare without case.
      const bare = value.length > host.length && value.charCodeAt(host.length) === 0x3a ? value.slice(0, host.length) : value
      return bare === host || bare.toLowerCase() === host
    },
    forget(conn) {
      connections.delete(conn)
      core.limits.disconnect(conn.address)
    },
  }

  function setRouting(table: RoutingTable | null): void {
    const before = core.table
    core.table = table === null ? null : new Rendezvous(table.nodes)
    if (before === null) return
    const kept = new Set(table?.nodes.map((n) => n.id) ?? [])
    const gone = before.nodes.filter((n) => !kept.has(n.id)).map((n) => n.id)
    if (gone.length === 0) return
    let closed = 0
    for (const conn of connections) {
      const id = conn.nodeId
      if (id !== undefined && gone.includes(id)) {
        conn.goAway()
        closed++
      }
    }
    log.info({ gone, connections: closed }, 'Live nodes left the routing table: their clients were told to reconnect')
  }
  setRouting(opts.routing)

  const server: Server = createServer({ noDelay: true }, (socket: Socket) => {
    if (core.draining) return void socket.destroy()
    connections.add(new ClientConnection(socket, core))
  })
  server.on('error', (err) => log.error({ err }, 'proxy listener error'))

  const sweeper = setInterval(() => {
    core.tick++
    core.limits.sweep()
    for (const conn of connections) {
      const quiet = core.tick - conn.lastSeen
      if ((conn.idle && quiet >= IDLE_TIMEOUT_S) || (conn.waitingForHead && quiet >= HEAD_TIMEOUT_S)) conn.destroy()
    }
  }, 1000)
  sweeper.unref()

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // One accept per wake-up, so children sharing the socket take turns instead of one taking a burst.
    process.env['UV_TCP_SINGLE_ACCEPT'] = '1'
    server.listen('fd' in listen ? { fd: listen.fd } : { host: listen.host, port: listen.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  function destroyAll(): number {
    const cut = connections.size
    for (const conn of connections) conn.destroy()
    return cut
  }

  const proxy: Proxy = {
    port,
    setRouting,
    stats: () => ({ inflight: core.inflight, tracked: core.tunnels, requests: core.requests }),
    drain(timeoutMs) {
      if (drained) return drained
      core.draining = true
      server.close()
      for (const conn of connections) conn.drain()
      const deadline = Date.now() + timeoutMs
      drained = new Promise((resolve) => {
        const check = (): void => {
          if (connections.size > 0 && Date.now() < deadline) return
          clearInterval(timer)
          clearInterval(sweeper)
          const busy = [...connections].filter((c) => !c.idle).length
          destroyAll()
          resolve({ cut: busy })
        }
        const timer = setInterval(check, 25)
        check()
      })
      return drained
    },
    async close() {
      await proxy.drain(config.drainTimeout)
    },
    destroy() {
      core.draining = true
      clearInterval(sweeper)
      server.close()
      destroyAll()
    },
  }
  return proxy
}
