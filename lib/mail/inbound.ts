/**
 * Inbound mail as it crosses processes: what a mail node records (datastore
 * kind `mailInbound`) and enqueues (task {@link MAIL_TASK_NAME}), and what an
 * app node hands to the build's `handleMail`. docs/mail.md describes it.
 */
import { createHash, randomBytes } from 'node:crypto'

/** The reserved task name an app node routes to `handleMail` instead of `handleTask`. */
export const MAIL_TASK_NAME = 'espra.mail'
/** Runs a handoff gets before it is a dead letter (backoff doubles from `--task-backoff`: about 17 minutes with the default 1s). */
export const MAIL_TASK_ATTEMPTS = 10

/** The SMTP envelope of one accepted message. */
export interface MailEnvelope {
  /** MAIL FROM (empty: the null sender `<>`). */
  readonly from: string
  /** RCPT TO, in the order accepted. */
  readonly to: readonly string[]
  /** The client's IP address. */
  readonly remoteAddress: string
  /** What the client said in HELO/EHLO. */
  readonly helo: string
}

/**
 * Messages of at most this many bytes are kept in the datastore (key
 * {@link inboundRawKey}, written in the same group commit as their record)
 * instead of the blob store: no files to create per message
 * (docs/mail.md, "Durability").
 */
export const INLINE_INBOUND_BYTES = 48 * 1024

/** The raw message: in the blob store under `key`, or (`store: 'ds'`) in the datastore under {@link inboundRawKey}. */
export interface RawMessageRef {
  /** Its blob key; for a message kept in the datastore, where it would be (attachments go beside it). */
  readonly key: string
  readonly size: number
  readonly sha256: string
  /** `ds`: the bytes are the datastore record `raw/<id>` (kind `mailInbound`, `{bytes}`); absent: the blob store. */
  readonly store?: 'ds'
}

/** The payload of an {@link MAIL_TASK_NAME} task: small, whatever the message's size. */
export interface MailTaskPayload {
  readonly id: string
  readonly raw: RawMessageRef
  readonly envelope: MailEnvelope
  /** ms since the epoch, when the mail node answered 250. */
  readonly receivedAt: number
}

/** An attachment, stored in the blob store while the message was parsed. */
export interface MailAttachment {
  readonly key: string
  readonly filename: string | null
  readonly size: number
  readonly type: string
  readonly sha256: string
  readonly contentId: string | null
  /** `attachment` or `inline`. */
  readonly disposition: string
}

/** What `handleMail(message)` receives (docs/app-api.md, "Mail"). */
export interface InboundMessage {
  readonly id: string
  readonly envelope: MailEnvelope
  readonly receivedAt: number
  readonly raw: RawMessageRef
  /** Every header line in order, `[lower-case name, unfolded value]`; repeats (Received) kept. */
  readonly headers: readonly (readonly [string, string])[]
  readonly messageId: string | null
  readonly subject: string
  readonly from: string
  readonly date: string | null
  readonly text: string | null
  readonly html: string | null
  readonly attachments: readonly MailAttachment[]
}

/** A new message id: `m` + time (base 36, sortable) + 12 random hex digits. */
export function newMailId(now = Date.now()): string {
  return `m${now.toString(36)}${randomBytes(6).toString('hex')}`
}

/** Where a message's raw bytes go: one folder per UTC day, so an operator can expire old days. */
export function rawMailKey(id: string, at: number): string {
  return `mail/in/${new Date(at).toISOString().slice(0, 10)}/${id}.eml`
}

/** Where the `n`-th attachment of a message goes. */
export function attachmentKey(raw: RawMessageRef, id: string, n: number): string {
  return `${raw.key.replace(/\/[^/]+$/, '')}/${id}/${n}`
}

/** The datastore key of a message's record (kind `mailInbound`). */
export const inboundRecordKey = (id: string): string => `in/${id}`

/** The datastore key of a small message's raw bytes (kind `mailInbound`, value `{bytes}`), when its {@link RawMessageRef} says `store: 'ds'`. */
export const inboundRawKey = (id: string): string => `raw/${id}`

/**
 * The datastore key that recognises a client's retry after a lost 250: the
 * same Message-ID, the same bytes and the same recipients.
 */
export function dedupeKey(messageId: string | null, rawSha256: string, to: readonly string[]): string {
  const h = createHash('sha256').update(`${messageId ?? ''}\n${rawSha256}\n${[...to].map((a) => a.toLowerCase()).sort().join(',')}`)
  return `dedupe/${h.digest('hex')}`
}
