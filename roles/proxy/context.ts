/**
 * What every client connection of a proxy child shares (core.ts builds it,
 * connection.ts reads it): the routing table, limits, prebuilt answers and
 * the counters. Connections change nothing here but through `counters`.
 */
import type { TrustedProxies } from '../../lib/core/client-address.js'
import type { Logger } from '../../lib/core/log.js'
import type { RoutingTable } from '../../lib/core/node-state.js'
import type { Maintenance } from '../../lib/http/maintenance.js'
import type { NodesByHome } from '../../lib/routing/live-peers.js'
import type { ProxyCounters } from './counters.js'
import type { Limits } from './limits.js'
import type { HeadSpec } from './request-head.js'
import type { RouteKeys } from './route-keys.js'

export type RoutingNode = RoutingTable['nodes'][number]

/** What every connection of a child shares. */
export interface ProxyCore {
  /** Seconds since start, updated once a second: a cheap clock for idle checks. */
  tick: number
  draining: boolean
  table: NodesByHome<RoutingNode> | null
  /** Planned maintenance, compiled once per pushed state; null (the one check a request pays) while there is none. */
  maintenance: Maintenance | null
  readonly log: Logger
  readonly maxHeaderSize: number
  readonly headSpec: HeadSpec
  readonly routeKeys: RouteKeys
  readonly limits: Limits
  /** --trusted-proxies: whose PROXY v2 headers and X-Forwarded-For are believed. */
  readonly trusted: TrustedProxies
  /** Requests, answers in flight, tunnels and what the metrics report: connections count through its methods. */
  readonly counters: ProxyCounters
  readonly answers: Readonly<Record<'badRequest' | 'tooLarge' | 'tooManyHeaders' | 'notImplemented' | 'wsVersion' | 'tooManyConnections' | 'tooManyRequests' | 'unknownHost' | 'noTable' | 'noNode' | 'upstreamFailed' | 'nodeGone', Buffer>>
  isHealthPath(target: string): boolean
  healthAnswer(headOnly: boolean): Buffer
  servesHost(host: string | undefined): boolean
  /** With --https-redirect: the 308 to https for a plain-HTTP request of the live host; null without. */
  redirect(target: string): Buffer | null
}
