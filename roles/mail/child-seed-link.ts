/**
 * A mail child's own link to the seed. The way to `250` ends with one seed
 * round trip per group (`mail.inbound.commit`, inbound-store.ts); relayed
 * through the parent it cost two IPC hops and the parent's event loop on top
 * of the seed's answer, and every child's groups queued behind each other in
 * the one parent. So each child opens its own meta link (the cluster secret
 * is in the config every child gets in its first IPC message) and sends its
 * seed ops over it: the datastore, the embedded queue's enqueue, the group
 * op and the node list.
 *
 * It follows the seeds as the parent's link does (lib/process/seed-link.ts:
 * the same seed list in the same order, reconnecting with backoff, moving to
 * the leader when a seed that does not lead answers), authenticated as a
 * node peer under `<node id>/<pid>` that never registers: the registry shows
 * the node once, as before. While it is down (the child just started, or the
 * seed is restarting) a request goes through the parent as before
 * (role.ts relays it), so nothing waits for this link in particular.
 * `espra_mail_seed_requests_total{via}` says which way requests went.
 */
import type { Registry } from 'prom-client'
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import { counterFrom, gaugeFrom } from '../../lib/process/metric-sources.js'
import type { ParentChannel } from '../../lib/process/role.js'
import { createMetaClient } from '../../lib/transport/meta-client.js'
import type { MetaRequester } from '../../lib/transport/resend.js'

/** What a child asks its parent to send to the seed (role.ts relays it) while its own link is down. */
export interface MailSeedRequest {
  readonly t: 'mail-seed'
  readonly op: string
  readonly body: unknown
}

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
}

export function createChildSeedLink(opts: ChildSeedLinkOptions): ChildSeedLink {
  const { config, parent } = opts
  const suffix = `/${process.pid}`
  const client = createMetaClient({
    seeds: config.seed,
    secret: config.secret,
    peer: { kind: 'node', id: config.nodeId.slice(0, MAX_PEER_ID - suffix.length) + suffix },
    maxFrame: config.maxFrame,
    log: opts.log.child({ link: 'mail-child' }),
    reconnect: true,
    requestTimeoutMs: SEED_TIMEOUT_MS,
  })
  const sent = { link: 0, parent: 0 }
  counterFrom(opts.metrics, 'espra_mail_seed_requests_total', 'seed requests of a mail child (datastore, enqueue, inbound groups, node list), by the way they went: its own meta link, or relayed by the parent while that link was down', () => [
    { labels: { via: 'link' }, value: sent.link },
    { labels: { via: 'parent' }, value: sent.parent },
  ])
  gaugeFrom(opts.metrics, 'espra_mail_seed_link_up', 'whether the mail child\'s own meta link to the seed is up (1) or its seed requests go through the parent (0)', () => (client.connected ? 1 : 0))
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
      return parent.request<R>({ t: 'mail-seed', op, body } satisfies MailSeedRequest, timeoutMs ?? SEED_TIMEOUT_MS)
    },
    close: () => client.close(),
    destroy: () => client.destroy(),
  }
}
