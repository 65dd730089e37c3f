/**
 * How an app child reaches the seed for its mail handoffs: the claim (with a
 * small message's raw bytes) before `handleMail` and the outcome after it
 * (seed/mail-handoff-ops.ts). The claims of one turn of the event loop (the
 * tasks of one lease) go as one `mail.inbound.claims`, and the outcomes of
 * one turn as one `mail.inbound.outcomes`: one round trip each for the lot
 * instead of one per message, whose writes the seed commits together. On
 * the seed's own queue an outcome carries its task's settlement too
 * (`finish`), so the handoff's note and settle are one op, not two.
 * A seed of an earlier version answers `ESPRA_ERR_META_UNKNOWN_OP`: the
 * child then sends each as `mail.inbound.claim`/`mail.inbound.outcome`, and
 * for a seed that knows neither the same steps go as the single
 * `ds.get`/`ds.putIf` ops they are made of (lib/mail/inbound-handoff.ts),
 * with the same guarantees. Every op may be applied twice harmlessly (a
 * claim is a compare-and-set from no task, a note a compare-and-set from
 * the task the record names), so each is sent again over a link that
 * dropped, within the datastore client's window.
 */
import type { EspraError } from '../../lib/core/errors.js'
import { claimInbound, claimsPerOp, MAX_OUTCOMES_PER_OP, noteInboundOutcome, type HandoffClaim, type HandoffOutcome } from '../../lib/mail/inbound-handoff.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import { DATASTORE_RETRY_WINDOW_MS } from '../../lib/storage/datastore-client.js'
import { newOpId } from '../../lib/storage/op-id.js'
import type { Settlement } from '../../lib/tasks/task.js'
import { createResender, type MetaRequester } from '../../lib/transport/resend.js'

export interface MailHandoffOps {
  /** Whether task `task` hands message `id` and, if so, the message's raw bytes when they are a datastore record. */
  claim(id: string, task: string): Promise<HandoffClaim>
  /** Notes an attempt's outcome on the message's record; false when nothing was noted (the record is gone or names another task). */
  outcome(outcome: HandoffOutcome): Promise<boolean>
  /**
   * The same, and the attempt's task settled on the seed's queue in the same op (only for the seed's embedded or
   * PostgreSQL queue). `settled` false: the seed could not take the settlement (a seed without the list ops): the
   * caller settles the task itself; `lost`: settled too late, the task's lease had expired.
   */
  finish(outcome: HandoffOutcome, settlement: Settlement): Promise<{ noted: boolean; settled: boolean; lost: boolean }>
}

interface Finish {
  readonly outcome: HandoffOutcome
  readonly settlement?: Settlement
}

const unknownOp = (err: unknown) => (err as EspraError | null)?.code === 'ESPRA_ERR_META_UNKNOWN_OP'

interface Waiting<A, R> {
  readonly arg: A
  readonly resolve: (r: R) => void
  readonly reject: (err: unknown) => void
}

/**
 * Gathers the calls of one turn of the event loop and sends them `per` at a
 * time through `many`; once `many` is unknown to the seed, each goes alone
 * through `one` from then on.
 */
function coalesce<A, R>(per: number, many: (args: A[]) => Promise<R[]>, one: (arg: A) => Promise<R>): (arg: A) => Promise<R> {
  let waiting: Waiting<A, R>[] = []
  let batched = true
  const flush = () => {
    const all = waiting
    waiting = []
    const alone = (part: Waiting<A, R>[]) => {
      for (const w of part) one(w.arg).then(w.resolve, w.reject)
    }
    for (let i = 0; i < all.length; i += per) {
      const part = all.slice(i, i + per)
      if (!batched) {
        alone(part)
        continue
      }
      many(part.map((w) => w.arg)).then((rs) => part.forEach((w, n) => w.resolve(rs[n]!)), (err: unknown) => {
        if (!unknownOp(err)) return part.forEach((w) => w.reject(err))
        batched = false
        alone(part)
      })
    }
  }
  return (arg) => new Promise<R>((resolve, reject) => {
    if (waiting.length === 0) setImmediate(flush)
    waiting.push({ arg, resolve, reject })
  })
}

/** The ops over `seed` (the child's way to the seed); `datastore`: the single ops, for a seed that does not know them; `maxFrame`: the meta frame limit the claims' answers must fit. */
export function createMailHandoffOps(seed: MetaRequester, datastore: Pick<Datastore, 'get' | 'putIf'>, maxFrame = 1024 ** 2): MailHandoffOps {
  const resender = createResender(seed)
  const send = <R>(op: string, body: unknown) => resender.send<R>(op, body, DATASTORE_RETRY_WINDOW_MS)
  const claimOne = ({ id, task }: { id: string; task: string }) => send<HandoffClaim>('mail.inbound.claim', { id, task }).catch((err: unknown) => {
    if (unknownOp(err)) return claimInbound(datastore, id, task)
    throw err
  })
  const outcomeOne = (outcome: HandoffOutcome) => send<{ noted: boolean }>('mail.inbound.outcome', outcome).then((r) => r.noted, (err: unknown) => {
    if (unknownOp(err)) return noteInboundOutcome(datastore, outcome)
    throw err
  })
  const claims = coalesce(claimsPerOp(maxFrame), async (list: { id: string; task: string }[]) => (await send<{ claims: HandoffClaim[] }>('mail.inbound.claims', { claims: list })).claims, claimOne)
  // Outcomes with their settlements (`settle`, applied once per op id: the op is sent again over a link that dropped).
  const outcomes = coalesce(MAX_OUTCOMES_PER_OP, async (list: Finish[]) => {
    const results = list.flatMap((f) => (f.settlement === undefined ? [] : [f.settlement]))
    const body = { outcomes: list.map((f) => f.outcome), ...(results.length === 0 ? {} : { settle: { results, opId: newOpId() } }) }
    const { noted, lost = [] } = await send<{ noted: boolean[]; lost?: string[] }>('mail.inbound.outcomes', body)
    return list.map((f, n) => ({ noted: noted[n]!, settled: f.settlement !== undefined, lost: f.settlement !== undefined && lost.includes(f.settlement.id) }))
  }, async (f: Finish) => ({ noted: await outcomeOne(f.outcome), settled: false, lost: false }))
  return {
    claim: (id, task) => claims({ id, task }),
    outcome: async (outcome) => (await outcomes({ outcome })).noted,
    finish: (outcome, settlement) => outcomes({ outcome, settlement }),
  }
}
