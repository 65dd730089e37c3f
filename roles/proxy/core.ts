/**
 * The proxy of one child: a raw TCP listener (the node's shared public
 * socket), the routing table as a rendezvous table over the Live homes
 * (lib/routing/live-peers.ts), the quick answers built once, per-address
 * limits, and the bookkeeping drain needs. Connections (./connection.ts) do
 * the per-request work.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { createSecureContext } from 'node:tls'
import type { NodeConfig } from '../../lib/core/config.js'
import { createTrustedProxies, plainAddress } from '../../lib/core/client-address.js'
import type { Logger } from '../../lib/core/log.js'
import { readTlsFiles } from '../../lib/core/tls-files.js'
import type { MaintenanceState, RoutingTable } from '../../lib/core/node-state.js'
import { compileMaintenance } from '../../lib/http/maintenance.js'
import type { Registry } from 'prom-client'
import type { HttpServerStats } from '../../lib/http/server.js'
import { NodesByHome } from '../../lib/routing/live-peers.js'
import { errorResponse, jsonResponse } from './answers.js'
import { ClientConnection } from './connection.js'
import type { ProxyCore } from './context.js'
import { ProxyCounters } from './counters.js'
import { createLimits, type Limits } from './limits.js'
import { readProxyHeader } from './proxy-header.js'
import { createHeadSpec, LIVE_MAX_HEADERS } from './request-head.js'
import { compileRouteKeys } from './route-keys.js'

const HEALTH_PATH = '/_espra/health'
/** A drain closes keep-alive connections still idle this long after it began (the uWS roles wait the same). */
const DRAIN_QUIET_MS = 500
/**
 * Long-lived clients (WebSocket, SSE) of a Live node that left the table are told to reconnect at random
 * moments within this long, not all at once: a drained node still serves them meanwhile (its grace is 20 s
 * by default), and the nodes that take them over are not hit by every reconnect in the same instant. A node
 * that died closes its tunnels itself, so they do not wait for this.
 */
const LEAVE_SPREAD_MS = 5000
/** A keep-alive client connection idle this long is closed (longer than an ELB's default 60 s idle timeout, as AWS advises). */
const IDLE_TIMEOUT_S = 75
/** A request head (the first one: with the TLS handshake, counted from the accept) must arrive within this long (slow-loris). */
const HEAD_TIMEOUT_S = 10

export interface ProxyOptions {
  readonly config: NodeConfig
  readonly log: Logger
  /** Health status and body, as every node answers them. */
  health(): { status: number; body: Record<string, unknown> }
  /** The routing table to start with (the parent's latest), if any. */
  readonly routing: RoutingTable | null
  /** Per-address limits (the node-wide ones: limits-client.ts); absent: this child's own counts only. */
  readonly limits?: Limits
}

export interface Proxy {
  readonly port: number
  /** The HTTPS port; undefined without TLS. */
  readonly tlsPort: number | undefined
  setRouting(table: RoutingTable | null): void
  /** The node's maintenance state (NodeState.maintenance) changed. */
  setMaintenance(state: MaintenanceState | null): void
  stats(): HttpServerStats
  /** Registers the `espra_proxy_…` series into this child's registry. */
  registerMetrics(registry: Registry): void
  /** Stops accepting; connections close after their next answer, idle ones after a quiet period; cut at the deadline. */
  drain(timeoutMs: number): Promise<{ cut: number }>
  close(): Promise<void>
  destroy(): void
}

/** The live host this proxy serves, e.g. `us-1.live.localhost`. */
export function liveHost(config: NodeConfig): string {
  return `${config.region}.live.${config.liveDomain}`
}

export type ListenOn = { fd: number } | { host: string; port: number }

function listenOn(server: Server, on: ListenOn): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen('fd' in on ? { fd: on.fd } : { host: on.host, port: on.port }, () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : 0)
    })
  })
}

/**
 * Starts a child's proxy on `listen`: `{fd}` (the node's shared socket) or
 * `{host, port}` (tests and single-process use); with `tls` (and
 * --tls-cert/--tls-key set) also HTTPS there, the files read now.
 */
export async function startProxy(opts: ProxyOptions, listen: ListenOn, tls?: ListenOn): Promise<Proxy> {
  const { config, log } = opts
  const host = liveHost(config)
  // Read here, in each child, so the children a SIGHUP starts serve renewed files.
  const tlsFiles = tls !== undefined && config.tlsCert !== null && config.tlsKey !== null ? readTlsFiles(config.tlsCert, config.tlsKey) : null
  const httpsOrigin = tlsFiles !== null && config.httpsRedirect ? `https://${host}${config.tlsPort === 443 ? '' : `:${config.tlsPort}`}` : null
  const routeKeys = compileRouteKeys(config.routeKeys)
  const connections = new Set<ClientConnection>()
  let drained: Promise<{ cut: number }> | null = null

  const answers: ProxyCore['answers'] = {
    badRequest: errorResponse('ESPRA_ERR_PROXY_BAD_REQUEST', undefined, { close: true }),
    tooLarge: errorResponse('ESPRA_ERR_PROXY_HEADERS_TOO_LARGE', `request head larger than ${config.maxHeaderSize} bytes`, { close: true }),
    tooManyHeaders: errorResponse('ESPRA_ERR_PROXY_TOO_MANY_HEADERS', `more than ${LIVE_MAX_HEADERS} header lines (X-Forwarded-For and X-Forwarded-Proto included)`, { close: true }),
    notImplemented: errorResponse('ESPRA_ERR_PROXY_METHOD', 'Live nodes serve GET, HEAD, POST, PUT, DELETE, PATCH and OPTIONS', { close: true }),
    wsVersion: errorResponse('ESPRA_ERR_PROXY_WEBSOCKET_VERSION', undefined, { close: true, headers: { 'Sec-WebSocket-Version': '13', Upgrade: 'websocket' } }),
    tooManyConnections: errorResponse('ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS', `more than ${config.maxConnsPerAddress} connections from this address`, { close: true }),
    tooManyRequests: errorResponse('ESPRA_ERR_PROXY_TOO_MANY_REQUESTS', `more than ${config.maxRpsPerAddress} requests per second from this address`, { close: true, headers: { 'Retry-After': '1' } }),
    unknownHost: errorResponse('ESPRA_ERR_HTTP_NOT_FOUND', `unknown host: this proxy serves ${host}`),
    noTable: errorResponse('ESPRA_ERR_PROXY_NO_ROUTING_TABLE', 'no routing table from the seed yet; retry shortly', { close: true, headers: { 'Retry-After': '1' } }),
    noNode: errorResponse('ESPRA_ERR_PROXY_NO_LIVE_NODE', `no Live node in region ${config.region}; retry shortly`, { close: true, headers: { 'Retry-After': '1' } }),
    upstreamFailed: errorResponse('ESPRA_ERR_PROXY_UPSTREAM', undefined, { close: true }),
    nodeGone: errorResponse('ESPRA_ERR_PROXY_NODE_GONE', undefined, { close: true, headers: { 'Retry-After': '0' } }),
  }
  const core: ProxyCore = {
    tick: 0,
    draining: false,
    table: null,
    maintenance: null,
    log,
    maxHeaderSize: config.maxHeaderSize,
    headSpec: createHeadSpec(routeKeys.headerNames),
    routeKeys,
    limits: opts.limits ?? createLimits(config.maxConnsPerAddress, config.maxRpsPerAddress),
    trusted: createTrustedProxies(config.trustedProxies),
    answers,
    counters: new ProxyCounters({
      bad_request: answers.badRequest, too_large: answers.tooLarge, too_many_headers: answers.tooManyHeaders, not_implemented: answers.notImplemented,
      ws_version: answers.wsVersion, too_many_connections: answers.tooManyConnections, too_many_requests: answers.tooManyRequests,
      unknown_host: answers.unknownHost, no_table: answers.noTable, no_node: answers.noNode, upstream_failed: answers.upstreamFailed, node_gone: answers.nodeGone,
    }),
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
    redirect(target) {
      if (httpsOrigin === null) return null
      // Targets are origin form (request-head.ts): the path as sent.
      const location = `${httpsOrigin}${target}`
      const body = JSON.stringify({ location })
      return Buffer.from(`HTTP/1.1 308 Permanent Redirect\r\nLocation: ${location}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n\r\n${body}`, 'latin1')
    },
  }

  /** A client connection closed: it no longer counts, against the set or its address's limit. */
  function forget(conn: ClientConnection): void {
    connections.delete(conn)
    if (conn.counted !== null) core.limits.disconnect(conn.counted)
  }

  function setRouting(table: RoutingTable | null): void {
    const before = core.table
    core.table = table === null ? null : new NodesByHome(table.nodes)
    if (before === null) return
    const kept = new Set(table?.nodes.map((n) => n.id) ?? [])
    const gone = before.nodes.filter((n) => !kept.has(n.id)).map((n) => n.id)
    const had = new Set(before.nodes.map((n) => n.id))
    if (table !== null && table.nodes.some((n) => !had.has(n.id))) rebalance()
    if (gone.length === 0) return
    let closed = 0
    let spread = 0
    for (const conn of connections) {
      const id = conn.nodeId
      if (id === undefined || !gone.includes(id)) continue
      if (conn.longLivedKey === null) {
        conn.goAway()
        closed++
        continue
      }
      spread++
      setTimeout(() => {
        // Checked again: the client may have left, or the node come back in the meantime.
        if (conn.nodeId === id && !(core.table?.nodes.some((n) => n.id === id) ?? false)) conn.goAway()
      }, Math.random() * LEAVE_SPREAD_MS).unref()
    }
    log.info({ gone, connections: closed, longLived: spread, spreadMs: LEAVE_SPREAD_MS }, 'Live nodes left the routing table: their clients were told to reconnect')
  }
  setRouting(opts.routing)

  /**
   * A Live node joined: the long-lived clients whose key it now owns are told
   * to reconnect (they land on it through the proxy and recover by sequence),
   * each at a random moment within --rebalance-spread so the new node is not
   * hit by all of them at once. The rest stay where they are.
   */
  function rebalance(): void {
    if (config.rebalanceSpread === 0) return
    let moving = 0
    for (const conn of connections) {
      const key = conn.longLivedKey
      if (key === null || core.table?.pick(key)?.id === conn.nodeId) continue
      moving++
      setTimeout(() => {
        // Checked again: the table may have changed since, or the client gone.
        const now = conn.longLivedKey
        if (now !== null && core.table?.pick(now)?.id !== conn.nodeId) conn.goAway('live node moved: reconnect')
      }, Math.random() * config.rebalanceSpread).unref()
    }
    if (moving > 0) log.info({ connections: moving, spreadMs: config.rebalanceSpread }, 'a Live node joined: clients whose keys it owns now will be told to reconnect')
  }

  const server: Server = createServer({ noDelay: true, pauseOnConnect: true }, (socket: Socket) => {
    if (core.draining) return void socket.destroy()
    connections.add(new ClientConnection(socket, core, forget, null))
  })
  server.on('error', (err) => log.error({ err }, 'proxy listener error'))
  // The TLS port is a plain listener too: each connection is a ClientConnection from the moment it is accepted, its TLS
  // handshake the first part of its first head. So it is counted against --max-conns-per-address and held to the head
  // deadline from the start, like a plain one (a tls.Server would hand it over only once the handshake is done).
  const secureContext = tlsFiles === null ? null : createSecureContext({ cert: tlsFiles.cert, key: tlsFiles.key })
  const tlsServer: Server | null = secureContext === null ? null : createServer({ noDelay: true, pauseOnConnect: true }, (socket: Socket) => {
    if (core.draining) return void socket.destroy()
    if (core.trusted.none || !core.trusted.has(plainAddress(socket.remoteAddress ?? ''))) return void connections.add(new ClientConnection(socket, core, forget, secureContext))
    // A trusted balancer may start with a PROXY v2 header, before the ClientHello.
    readProxyHeader(socket, HEAD_TIMEOUT_S * 1000, (source) => {
      if (core.draining) return void socket.destroy()
      connections.add(new ClientConnection(socket, core, forget, secureContext, source))
    })
  })
  tlsServer?.on('error', (err) => log.error({ err }, 'proxy TLS listener error'))

  const sweeper = setInterval(() => {
    core.tick++
    core.limits.sweep()
    for (const conn of connections) {
      const quiet = core.tick - conn.lastSeen
      if ((conn.idle && quiet >= IDLE_TIMEOUT_S) || (conn.waitingForHead && quiet >= HEAD_TIMEOUT_S)) conn.destroy()
    }
  }, 1000)
  sweeper.unref()

  // One accept per wake-up, so children sharing the socket take turns instead of one taking a burst.
  process.env['UV_TCP_SINGLE_ACCEPT'] = '1'
  const port = await listenOn(server, listen)
  let tlsPort: number | undefined
  try {
    if (tlsServer !== null) tlsPort = await listenOn(tlsServer, tls!)
  } catch (err) {
    server.close()
    throw err
  }

  function destroyAll(): number {
    const cut = connections.size
    for (const conn of connections) conn.destroy()
    return cut
  }

  const proxy: Proxy = {
    port,
    tlsPort,
    setRouting,
    setMaintenance(state) {
      if (state !== core.maintenance?.state) core.maintenance = state === null ? null : compileMaintenance(state)
    },
    stats: () => ({ inflight: core.counters.inflight, tracked: core.counters.tunnels, requests: core.counters.requests }),
    registerMetrics: (registry) => core.counters.register(registry, { clients: () => connections.size }),
    drain(timeoutMs) {
      if (drained) return drained
      core.draining = true
      server.close()
      tlsServer?.close()
      for (const conn of connections) conn.drain()
      const started = Date.now()
      const deadline = started + timeoutMs
      let quiet = false
      drained = new Promise((resolve) => {
        const check = (): void => {
          // Busy connections close after their next answer; what is still idle after the quiet period is closed.
          if (!quiet && Date.now() - started >= Math.min(DRAIN_QUIET_MS, timeoutMs)) {
            quiet = true
            for (const conn of connections) conn.closeIfIdle()
          }
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
      tlsServer?.close()
      destroyAll()
    },
  }
  return proxy
}
