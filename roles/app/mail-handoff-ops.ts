/**
 * How an app child reaches the seed for a mail handoff: one round trip for
 * the claim (with a small message's raw bytes) and one for the outcome
 * (`mail.inbound.claim`, `mail.inbound.outcome`: seed/mail-handoff-ops.ts).
 * A seed of an earlier version answers `ESPRA_ERR_META_UNKNOWN_OP`: the same
 * steps then go as the single `ds.get`/`ds.putIf` ops they are made of
 * (lib/mail/inbound-handoff.ts), with the same guarantees, for as long as that
 * seed answers so. Both ops may be applied twice harmlessly (the claim is a
 * compare-and-set from no task, the note a compare-and-set from the task the
 * record names), so each is sent again over a link that dropped, within the
 * datastore client's window.
 */
import type { EspraError } from '../../lib/core/errors.js'
import { claimInbound, noteInboundOutcome, type HandoffClaim, type HandoffOutcome } from '../../lib/mail/inbound-handoff.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../../lib/storage/datastore-client.js'
import { createResender, type MetaRequester } from '../../lib/transport/resend.js'

export interface MailHandoffOps {
  /** Whether task `task` hands message `id` and, if so, the message's raw bytes when they are a datastore record. */
  claim(id: string, task: string): Promise<HandoffClaim>
  /** Notes an attempt's outcome on the message's record; false when nothing was noted (the record is gone or names another task). */
  outcome(outcome: HandoffOutcome): Promise<boolean>
}

const unknownOp = (err: unknown) => (err as EspraError | null)?.code === 'ESPRA_ERR_META_UNKNOWN_OP'

/** The ops over `seed` (the child's way to the seed); `datastore`: the single ops, for a seed that does not know them. */
export function createMailHandoffOps(seed: MetaRequester, datastore: Pick<Datastore, 'get' | 'putIf'>): MailHandoffOps {
  const resender = createResender(seed)
  return {
    claim: (id, task) => resender.send<HandoffClaim>('mail.inbound.claim', { id, task }, DATASTORE_RETRY_WINDOW_MS).catch((err: unknown) => {
      if (unknownOp(err)) return claimInbound(datastore, id, task)
      throw err
    }),
    outcome: (outcome) => resender.send<{ noted: boolean }>('mail.inbound.outcome', outcome, DATASTORE_RETRY_WINDOW_MS).then((r) => r.noted, (err: unknown) => {
      if (unknownOp(err)) return noteInboundOutcome(datastore, outcome)
      throw err
    }),
  }
}
