/**
 * A node child's own link to the seed, for the seed ops on its hot path (a
 * mail child's inbound groups, an app child's mail handoffs). Relayed
 * through the parent each op cost two IPC hops and a turn of the parent's
 * event loop on top of the seed's answer, and every child's ops queued
 * behind each other in the one parent. So the child opens its own meta link
 * (the cluster secret is in the config every child gets in its first IPC
 * message) and sends those ops over it.
 *
 * It follows the seeds as the parent's link does (seed-link.ts: the same
 * seed list in the same order, reconnecting with backoff, moving to the
 * leader when a seed that does not lead answers), authenticated as a node
 * peer under `<node id>/<pid>` that never registers: the registry shows the
 * node once, as before. While it is down (the child just started, or the
 * seed is restarting) a request goes through the parent as before (the
 * role's parent relays the message `relay` builds), so nothing waits for
 * this link in particular. `espra_<role>_seed_requests_total{via}` says which
 * way requests went, `espra_<role>_seed_link_up` whether the link is up.
 */
import type { Registry } from 'prom-client'
import type { NodeConfig } from '../core/config.js'
import type { Logger } from '../core/log.js'
import { createMetaClient } from '../transport/meta-client.js'
import type { MetaRequester } from '../transport/resend.js'
import { counterFrom, gaugeFrom } from './metric-sources.js'
import type { ParentChannel } from './role.js'

const SEED_TIMEOUT_MS = 10_000
/** The seed refuses peer ids longer than this (lib/transport/meta-server.ts). */
const MAX_PEER_ID = 64

export interface ChildSeedLink extends MetaRequester {
  /** True while the child's own link is up (requests take it). */
  readonly connected: boolean
  close(): Promise<void>
  destroy(): void
}

export interface ChildSeedLinkOptions {
  readonly config: NodeConfig
  readonly log: Logger
  readonly parent: ParentChannel
  readonly metrics: Registry
  /** The role, in the link's log label (`<role>-child`) and its metrics' names. */
  readonly role: string
  /** What the child's requests are (for the metrics' help), such as `datastore, enqueue, inbound groups, node list`. */
  readonly carries: string
  /** The request the parent relays to the seed while the link is down. */
  readonly relay: (op: string, body: unknown) => unknown
}

/** Opens the link at once; requests take it whenever it is up, else the parent. */
export function createChildSeedLink(opts: ChildSeedLinkOptions): ChildSeedLink {
  const { config, parent, role } = opts
  const suffix = `/${process.pid}`
  const client = createMetaClient({
    seeds: config.seed,
    secret: config.secret,
    peer: { kind: 'node', id: config.nodeId.slice(0, MAX_PEER_ID - suffix.length) + suffix },
    maxFrame: config.maxFrame,
    log: opts.log.child({ link: `${role}-child` }),
    reconnect: true,
    requestTimeoutMs: SEED_TIMEOUT_MS,
  })
  const sent = { link: 0, parent: 0 }
  counterFrom(opts.metrics, `espra_${role}_seed_requests_total`, `seed requests of a ${role} child (${opts.carries}), by the way they went: its own meta link, or relayed by the parent while that link was down`, () => [
    { labels: { via: 'link' }, value: sent.link },
    { labels: { via: 'parent' }, value: sent.parent },
  ])
  gaugeFrom(opts.metrics, `espra_${role}_seed_link_up`, `whether the ${role} child's own meta link to the seed is up (1) or its seed requests go through the parent (0)`, () => (client.connected ? 1 : 0))
  return {
    get connected() {
      return client.connected
    },
    request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R> {
      if (client.connected) {
        sent.link++
        return client.request<R>(op, body, timeoutMs)
      }
      sent.parent++
      return parent.request<R>(opts.relay(op, body), timeoutMs ?? SEED_TIMEOUT_MS)
    },
    close: () => client.close(),
    destroy: () => client.destroy(),
  }
}
