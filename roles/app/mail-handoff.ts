/**
 * The app side of the mail handoff: a leased `espra.mail` task carries only
 * the message id, where its raw bytes are (a blob key, or for a small message
 * its datastore record) and the envelope; before a worker runs
 * `handleMail`, the child's main thread (which holds the blob store and the
 * datastore) reads and parses the raw message as a stream (attachments to the blob store) and
 * gives the worker the whole message instead of the small payload. Worker
 * messages are not bound by the queue's 64 KB payload limit.
 *
 * The message's authentication results (`message.auth`): the task's `auth`
 * when the mail node verified before its 250 (`--mail-dmarc-reject`, or a
 * task from a previous version); else, when the task carries `verify`, the
 * stored raw message is verified here, read a second time alongside the
 * parse (lib/mail/verify-stored.ts), so the 250 never waited for DNS.
 *
 * Before anything is read, the task claims the message (one seed round
 * trip, which also brings a small message's raw bytes: mail-handoff-ops.ts,
 * lib/mail/inbound-handoff.ts); a task that does not hand it is settled
 * without running. Once an attempt is over, its outcome is noted on the
 * message's record (`handledAt`, or `attempts`, `lastError`, `failedAt`) for
 * `admin mail inbound`, one more round trip; a note that cannot be written
 * is logged, never a reason to run the handoff again.
 */
import { Packr } from 'msgpackr'
import type { Logger } from '../../lib/core/log.js'
import { inboundRawKey, MAIL_TASK_NAME, type MailTaskPayload } from '../../lib/mail/inbound.js'
import type { DNSResolver } from 'mailauth'
import type { AuthedInboundMessage, AuthedMailTaskPayload, HandoffVerification, MailAuthResults } from '../../lib/mail/inbound-auth.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import { decodePayload, type LeasedTask, type Settlement } from '../../lib/tasks/task.js'
import type { MailHandoffOps } from './mail-handoff-ops.js'
import type { TaskOutcome } from './protocol.js'

/** Resolvers kept per child (one per distinct DNS servers and timeout the tasks name). */
const MAX_RESOLVERS = 8

// The same encoding as task payloads (lib/tasks/task.ts), so the worker decodes it as any payload.
const packr = new Packr({ useRecords: false, moreTypes: false })

/** Where the parse and the verification read the raw message. */
interface RawStores {
  readonly blobs: BlobStore
  readonly datastore: Pick<Datastore, 'get'>
}

/**
 * The raw message as the claim brought it: a small message's bytes served as
 * its datastore record `raw/<id>` would be (null when the claim brought none:
 * the parse then fails `ESPRA_ERR_MAIL_HANDOFF`, as for a record gone), read
 * by both the parse and the verification without another round trip; a
 * larger one from the blob store.
 */
function claimedStores(blobs: BlobStore, id: string, bytes: Uint8Array | null | undefined): RawStores {
  const rawKey = inboundRawKey(id)
  const record = bytes === undefined || bytes === null ? null : { bytes }
  return { blobs, datastore: { get: async (kind, key) => (kind === 'mailInbound' && key === rawKey ? record : null) } }
}

export interface MailPreparerOptions {
  readonly log: Logger
  /** The lookups of the verifications run here (tests pass their own records); by default the DNS servers the task names, or the system's. */
  readonly resolver?: (verify: HandoffVerification) => DNSResolver
}

/** For `espra.mail` tasks, the task with the parsed message as its payload (or `{skip}`: not this task's to hand); null for every other task. */
export function createMailPreparer(blobs: BlobStore, ops: Pick<MailHandoffOps, 'claim'>, opts: MailPreparerOptions): (task: LeasedTask) => Promise<LeasedTask | { skip: string }> | null {
  const onError = (err: unknown) => opts.log.warn({ err }, 'mail authentication failed to run: results are temperror')
  /**
   * One resolver per set of DNS servers and timeout (in practice one: the mail nodes' settings), kept for the child's
   * life: a resolver made per message cost a c-ares channel (and a read of resolv.conf) every time. It keeps answers
   * 2 s (DNS_CACHE_MS, mail-auth.ts): a burst of mail from one sender asks the same SPF and DMARC names.
   */
  const resolvers = new Map<string, DNSResolver>()
  const resolverFor = (verify: HandoffVerification, make: (servers: readonly string[], timeoutMs: number) => DNSResolver): DNSResolver => {
    const key = `${verify.timeoutMs} ${verify.dnsServers.join(',')}`
    let resolver = resolvers.get(key)
    if (resolver === undefined) {
      // Made before it is kept: servers it refuses throw here, and the verification says so (temperror) as before.
      resolver = make(verify.dnsServers, verify.timeoutMs)
      // Bounded: the settings come with each task; a cluster uses one or two.
      if (resolvers.size >= MAX_RESOLVERS) resolvers.delete(resolvers.keys().next().value!)
      resolvers.set(key, resolver)
    }
    return resolver
  }

  async function verifyHere(stores: RawStores, payload: AuthedMailTaskPayload, verify: HandoffVerification): Promise<MailAuthResults> {
    // mailauth is loaded with the first message to verify, as mailparser is.
    const [{ verifyStoredMessage }, { dnsResolver, DNS_CACHE_MS, unverified }] = await Promise.all([import('../../lib/mail/verify-stored.js'), import('../../lib/mail/mail-auth.js')])
    let resolver: DNSResolver
    try {
      resolver = opts.resolver?.(verify) ?? resolverFor(verify, (servers, timeoutMs) => dnsResolver(servers, timeoutMs, DNS_CACHE_MS))
    } catch (err) {
      onError(err)
      return unverified(`the DNS servers ${verify.dnsServers.join(', ')} are not usable: ${(err as Error)?.message ?? String(err)}`)
    }
    return verifyStoredMessage(stores, payload, verify, { onError, resolver })
  }

  return (task) => {
    if (task.name !== MAIL_TASK_NAME) return null
    return (async () => {
      const payload = decodePayload(task.payload) as AuthedMailTaskPayload
      const claim = await ops.claim(payload.id, task.id)
      if ('skip' in claim) return { skip: claim.skip }
      const stores = claimedStores(blobs, payload.id, claim.bytes)
      // mailparser is loaded with the first mail: most app nodes never handle one.
      const { parseInboundMessage } = await import('../../lib/mail/parse-message.js')
      const verify = payload.verify ?? null
      // The mail node's results when it verified; else verified here (the parse and the lookups at once); null: nobody verifies.
      const [parsed, auth] = await Promise.all([
        parseInboundMessage(stores, payload),
        payload.auth ?? (verify === null ? null : verifyHere(stores, payload, verify)),
      ])
      const message: AuthedInboundMessage = { ...parsed, auth }
      return { ...task, payload: packr.pack(message) }
    })()
  }
}

/**
 * Notes each `espra.mail` attempt's outcome on the message's record; other tasks are not its business. With
 * `settleHere` (the task queue is the seed's: embedded or PostgreSQL) the note carries the task's settlement, one
 * seed op for both; the promise says whether the task was settled (else the consumer settles it as any task).
 */
export function createMailOutcomeNotes(ops: Pick<MailHandoffOps, 'outcome' | 'finish'>, log: Logger, settleHere = false): (task: LeasedTask, outcome: TaskOutcome, settlement: Settlement) => Promise<boolean> | undefined {
  const warn = (err: unknown, task: LeasedTask) => log.warn({ err, task: task.id }, `could not note the mail handoff's outcome on its record (admin mail inbound may show it pending)`)
  return (task, outcome, settlement) => {
    if (task.name !== MAIL_TASK_NAME || outcome.result === 'released') return undefined
    let id: string
    try {
      id = (decodePayload(task.payload) as MailTaskPayload).id
    } catch (err) {
      warn(err, task)
      return undefined
    }
    const note = outcome.result === 'done'
      ? { id, task: task.id, attempt: task.attempt, result: 'done' as const }
      : { id, task: task.id, attempt: task.attempt, result: 'failed' as const, error: outcome.error }
    if (!settleHere) {
      ops.outcome(note).catch((err: unknown) => warn(err, task))
      return undefined
    }
    return ops.finish(note, settlement).then(({ settled, lost }) => {
      if (lost) log.warn({ lost: [task.id], count: 1 }, 'task leases expired before their results were reported: those tasks run again')
      return settled
    }, (err: unknown) => {
      // Neither noted nor (as far as we know) settled: the consumer settles it; a settle the seed did apply answers "lost" then.
      warn(err, task)
      return false
    })
  }
}
