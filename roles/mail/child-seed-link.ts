/**
 * A mail child's own link to the seed (lib/process/child-seed-link.ts): the
 * way to `250` ends with one seed round trip per group
 * (`mail.inbound.commit`, inbound-store.ts), sent over it with the
 * datastore ops, the embedded queue's enqueue and the node list; while it is
 * down they go through the parent (role.ts relays {@link MailSeedRequest}).
 */
import { createChildSeedLink, type ChildSeedLink, type ChildSeedLinkOptions } from '../../lib/process/child-seed-link.js'

/** What a child asks its parent to send to the seed (role.ts relays it) while its own link is down. */
export interface MailSeedRequest {
  readonly t: 'mail-seed'
  readonly op: string
  readonly body: unknown
}

export function createMailChildSeedLink(opts: Pick<ChildSeedLinkOptions, 'config' | 'log' | 'parent' | 'metrics'>): ChildSeedLink {
  return createChildSeedLink({
    ...opts,
    role: 'mail',
    carries: 'datastore, enqueue, inbound groups, node list',
    relay: (op, body) => ({ t: 'mail-seed', op, body } satisfies MailSeedRequest),
  })
}
