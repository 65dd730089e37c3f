/**
 * The authentication results of an inbound message (SPF, DKIM, DMARC, ARC),
 * as the app's `handleMail` receives them (`message.auth`): small and bounded
 * whatever the message carries (at most {@link MAX_DKIM_SIGNATURES}
 * signatures listed). Who verifies: the app node's handoff, after the 250,
 * with the mail node's settings ({@link HandoffVerification}); the mail node
 * before the 250 only with `--mail-dmarc-reject` (it must be able to refuse),
 * and then the results ride on the record and the task (`auth`).
 * docs/mail.md, "Authentication"; docs/app-api.md, "Mail".
 */
import type { InboundMessage, MailTaskPayload } from './inbound.js'

/** RFC 8601 result words (mailauth's). `temperror` also when the check did not finish in time. */
export type AuthResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy' | 'skipped'

export interface MailAuthResults {
  /** SPF of MAIL FROM (or the HELO name for the null sender) against the client's address. */
  readonly spf: { readonly result: AuthResult; readonly domain: string | null }
  /** `pass` when one signature passed, `none` when the message has none, else the first signature's result. */
  readonly dkim: {
    readonly result: AuthResult
    readonly signatures: readonly { readonly result: AuthResult; readonly domain: string; readonly selector: string | null; readonly aligned: boolean }[]
  }
  /** DMARC of the From domain; `policy` is the published one that applies (`none`, `quarantine`, `reject`), null without a record. */
  readonly dmarc: { readonly result: AuthResult; readonly domain: string | null; readonly policy: string | null }
  readonly arc: { readonly result: AuthResult }
  /** The Authentication-Results header value (RFC 8601) this node would add, at most 4 KB. */
  readonly header: string
}

/** Signatures listed in {@link MailAuthResults.dkim}; a message with more still gets its overall result. */
export const MAX_DKIM_SIGNATURES = 10

/**
 * What the handoff needs to verify a message the mail node took without
 * waiting for its results: the mail node's settings. The client's address,
 * HELO name and MAIL FROM are the envelope's.
 */
export interface HandoffVerification {
  /** The mail node's `--mail-auth-timeout`: how long the results are waited for once the raw message is read. */
  readonly timeoutMs: number
  /** Its `--mail-dns-servers` (empty: the app node's system resolver). */
  readonly dnsServers: readonly string[]
  /** Its host name: the authserv-id of the Authentication-Results value. */
  readonly mta: string
}

/**
 * The `espra.mail` task payload with the results: `auth` when the mail node
 * verified before the 250 (or a previous version did), else `verify` when the
 * handoff is to verify, else neither (`--mail-auth false`: not verified).
 */
export interface AuthedMailTaskPayload extends MailTaskPayload {
  readonly auth?: MailAuthResults | null
  readonly verify?: HandoffVerification | null
}

/** What `handleMail` receives: the message and its results (null: not verified). */
export interface AuthedInboundMessage extends InboundMessage {
  readonly auth: MailAuthResults | null
}
