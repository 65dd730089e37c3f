/**
 * The mail node asking the app whether it takes a recipient (the build's
 * optional `acceptRecipient(address)`), at RCPT time: a signed internal
 * request to an app node's public port, `POST` {@link ACCEPT_RECIPIENT_PATH}
 * with `{address, t}` and the header {@link SIGNATURE_HEADER}, an HMAC of
 * the body under a key derived from the cluster secret. The app node answers
 * only signed requests less than {@link MAX_SKEW_MS} old; anyone else gets
 * 403 `ESPRA_ERR_MAIL_RECIPIENT_FORBIDDEN` and the build never sees them.
 * docs/mail.md, "Recipients the app refuses".
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const ACCEPT_RECIPIENT_PATH = '/_espra/mail/accept-recipient'
export const SIGNATURE_HEADER = 'x-espra-signature'
/** A signed request older (or newer) than this is refused: a recorded one cannot be replayed later. */
export const MAX_SKEW_MS = 60_000

/** The answer's body: whether the app takes the address, why not, and whether the build exports the function at all. */
export interface RecipientAnswer {
  readonly accept: boolean
  readonly reason: string | null
  readonly exported: boolean
}

function sign(secret: string, body: string): string {
  return createHmac('sha256', `espra mail accept-recipient\n${secret}`).update(body).digest('hex')
}

/** The body and signature of a question about `address`. */
export function signedQuestion(secret: string, address: string, now = Date.now()): { body: string; signature: string } {
  const body = JSON.stringify({ address, t: now })
  return { body, signature: sign(secret, body) }
}

/** The address of a well-signed, fresh question; null for anything else. */
export function checkQuestion(secret: string, body: Uint8Array, signature: string | undefined, now = Date.now()): string | null {
  if (typeof signature !== 'string' || !/^[0-9a-f]{64}$/.test(signature)) return null
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
  if (!timingSafeEqual(Buffer.from(sign(secret, text), 'hex'), Buffer.from(signature, 'hex'))) return null
  try {
    const q = JSON.parse(text) as { address?: unknown; t?: unknown }
    if (typeof q.address !== 'string' || q.address.length > 320 || typeof q.t !== 'number' || Math.abs(now - q.t) > MAX_SKEW_MS) return null
    return q.address
  } catch {
    return null
  }
}
