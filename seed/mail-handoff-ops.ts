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
import { createError, type EspraError } from '../lib/core/errors.js'
import { checkClaim, checkClaims, checkOutcome, checkOutcomes, claimInbound, noteInboundOutcome } from '../lib/mail/inbound-handoff.js'
import type { Datastore } from '../lib/storage/datastore.js'
import { opIdProblem } from '../lib/storage/op-id.js'
import { checkSettlements, type Settlement } from '../lib/tasks/task.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { storeRemembers, type OpOnce } from './op-memory.js'
import type { SeedTaskQueue } from './stores.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'

/**
 * `settle` of `mail.inbound.outcomes`: `{results, opId?}`, the handoff tasks' settlements, applied once per op id
 * as `tasks.settle` applies them (seed/tasks-ops.ts); a bad one is refused naming `settle.<field>`.
 */
function checkSettle(body: unknown): { results: Settlement[]; opId: string | undefined } | null {
  const settle = isMap(body) ? body['settle'] : undefined
  if (settle === undefined || settle === null) return null
  if (!isMap(settle)) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'settle', reason: 'must be a map {results, opId?}' })
  const problem = opIdProblem(settle['opId'])
  if (problem) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: `settle.${problem.field}`, reason: `must be ${problem.allowed}` })
  try {
    return { results: checkSettlements(settle['results'], MAX_SETTLE), opId: (settle['opId'] ?? undefined) as string | undefined }
  } catch (err) {
    const e = err as EspraError
    if (e.code !== 'ESPRA_ERR_TASK_INVALID') throw err
    const { field, allowed } = e.details as { field: string; allowed: string }
    throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: `settle.${field}`, reason: `must be ${allowed}` })
  }
}

/** Settlements in one `mail.inbound.outcomes`: one per outcome at most. */
const MAX_SETTLE = 256

/**
 * `tasks`: the seed's task queue (the one app nodes lease the handoffs from) and how its op ids are applied once,
 * for the settlements `mail.inbound.outcomes` may carry; without it such a body is refused.
 */
export function mailHandoffHandlers(datastore: Pick<Datastore, 'get' | 'putIf'>, tasks?: { readonly queue: Pick<SeedTaskQueue, 'settle'>; readonly once?: OpOnce }): [string, RequestHandler<MetaPeer>][] {
  const once = tasks?.once ?? storeRemembers
  return [
    ['mail.inbound.claim', (body) => {
      const { id, task } = checkClaim(body)
      return claimInbound(datastore, id, task)
    }],
    ['mail.inbound.outcome', async (body) => ({ noted: await noteInboundOutcome(datastore, checkOutcome(body)) })],
    // The same for several handoffs at once (an app child's claims of one lease, its outcomes of one turn): one round
    // trip, and their writes share one LMDB commit. Each entry as its single op would have it, answered in order.
    ['mail.inbound.claims', async (body) => ({ claims: await Promise.all(checkClaims(body).map(({ id, task }) => claimInbound(datastore, id, task))) })],
    // With `settle`, the handoff tasks are settled too, after their notes: one op where the app child sent two.
    ['mail.inbound.outcomes', async (body) => {
      const outcomes = checkOutcomes(body)
      const settle = checkSettle(body)
      if (settle !== null && tasks === undefined) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'settle', reason: 'is not taken by this seed' })
      const noted = await Promise.all(outcomes.map((o) => noteInboundOutcome(datastore, o)))
      if (settle === null) return { noted }
      return { noted, lost: await once('tasks.settle', settle.opId, (opId) => tasks!.queue.settle(settle.results, opId)) }
    }],
  ]
}
