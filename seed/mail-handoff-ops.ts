/**
 * `mail.inbound.claim` and `mail.inbound.outcome` (docs/meta-protocol.md,
 * "Inbound mail"): an app node's handoff of one inbound message in two round
 * trips, the claim (with a small message's raw bytes) before `handleMail`
 * and the outcome after it, instead of the three to five `ds.get`/`ds.putIf`
 * ops they are made of; `mail.inbound.claims` and `mail.inbound.outcomes`
 * take several handoffs' at once (lib/mail/inbound-handoff.ts has both, and what each
 * guarantees). Over the seed's datastore as the `ds.*` ops write it: each
 * write is durable when the op answers.
 */
import { checkClaim, checkClaims, checkOutcome, checkOutcomes, claimInbound, noteInboundOutcome } from '../lib/mail/inbound-handoff.js'
import type { Datastore } from '../lib/storage/datastore.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'

export function mailHandoffHandlers(datastore: Pick<Datastore, 'get' | 'putIf'>): [string, RequestHandler<MetaPeer>][] {
  return [
    ['mail.inbound.claim', (body) => {
      const { id, task } = checkClaim(body)
      return claimInbound(datastore, id, task)
    }],
    ['mail.inbound.outcome', async (body) => ({ noted: await noteInboundOutcome(datastore, checkOutcome(body)) })],
    // The same for several handoffs at once (an app child's claims of one lease, its outcomes of one turn): one round
    // trip, and their writes share one LMDB commit. Each entry as its single op would have it, answered in order.
    ['mail.inbound.claims', async (body) => ({ claims: await Promise.all(checkClaims(body).map(({ id, task }) => claimInbound(datastore, id, task))) })],
    ['mail.inbound.outcomes', async (body) => ({ noted: await Promise.all(checkOutcomes(body).map((o) => noteInboundOutcome(datastore, o))) })],
  ]
}
