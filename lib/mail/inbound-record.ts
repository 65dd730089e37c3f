/**
 * The datastore record of one inbound message (kind `mailInbound`, key
 * `in/<id>`): written by the mail node before 250, its handoff's outcome
 * noted by the app node that ran it, read by `admin mail inbound`.
 */
import type { MailEnvelope, RawMessageRef } from './inbound.js'
import type { AuthedMailTaskPayload, HandoffVerification, MailAuthResults } from './inbound-auth.js'

export interface InboundRecord {
  id: string
  raw: RawMessageRef
  envelope: MailEnvelope
  messageId: string | null
  /** ms since the epoch, when the mail node took it. */
  at: number
  /** The mail node's results (with `--mail-dmarc-reject`, or written by a previous version); null: not verified by the mail node. */
  auth?: MailAuthResults | null
  /** Present: the handoff verifies the message with these settings (auth is then null); absent with `--mail-auth false`. */
  verify?: HandoffVerification | null
  /** The handoff task's id; null until it is queued (a crash in between leaves it null until the client retries). */
  task: string | null
  /** When `handleMail` returned for it (absent: not yet). */
  handledAt?: number | null
  /** Attempts run so far, and the last failure's error and time (absent: none failed). */
  attempts?: number
  lastError?: string | null
  failedAt?: number | null
}

/** The longest error kept on a record. */
export const MAX_RECORD_ERROR = 1000

/** The handoff task's payload a record gives (the seed's group op, the `--redis` single ops and `admin mail inbound retry` alike). */
export function handoffPayload(record: InboundRecord): AuthedMailTaskPayload {
  const payload: AuthedMailTaskPayload = { id: record.id, raw: record.raw, envelope: record.envelope, receivedAt: record.at, auth: record.auth ?? null }
  return (record.verify ?? null) === null ? payload : { ...payload, verify: record.verify }
}
