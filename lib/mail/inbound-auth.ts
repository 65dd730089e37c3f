/**
 * The authentication results of an inbound message (SPF, DKIM, DMARC, ARC),
 * as the mail node records them (`mailInbound` record, `auth`) and the app's
 * `handleMail` receives them (`message.auth`): small and bounded whatever the
 * message carries (at most {@link MAX_DKIM_SIGNATURES} signatures listed).
 * docs/app-api.md, "Mail".
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

/** The `espra.mail` task payload with the results (absent: verification is off, or the message came before it was built). */
export interface AuthedMailTaskPayload extends MailTaskPayload {
  readonly auth?: MailAuthResults | null
}

/** What `handleMail` receives: the message and its results (null: not verified). */
export interface AuthedInboundMessage extends InboundMessage {
  readonly auth: MailAuthResults | null
}
