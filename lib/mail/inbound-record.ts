/**
 * The datastore record of one inbound message (kind `mailInbound`, key
 * `in/<id>`): written by the mail node before 250, its handoff's outcome
 * noted by the app node that ran it, read by `admin mail inbound`.
 */
import type { MailEnvelope, RawMessageRef } from './inbound.js'
import type { MailAuthResults } from './inbound-auth.js'

export interface InboundRecord {
  id: string
  raw: RawMessageRef
  envelope: MailEnvelope
  messageId: string | null
  /** ms since the epoch, when the mail node took it. */
  at: number
  /** Absent on records written before authentication results were built; null: not verified. */
  auth?: MailAuthResults | null
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
