/**
 * Webhook signatures (docs/alerts.md, "Verifying a webhook"): the sender puts
 * the time in `X-Espra-Timestamp` (seconds since the epoch) and
 * `X-Espra-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared key of
 * `<timestamp>.<raw body>`. A receiver recomputes it over the raw bytes,
 * compares in constant time, and refuses a timestamp too far from its clock
 * (a replayed request).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'x-espra-signature'
export const TIMESTAMP_HEADER = 'x-espra-timestamp'
/** A receiver refuses a timestamp further than this from its clock. */
export const SIGNATURE_TOLERANCE_S = 300

/** The two headers for a body sent at `nowMs`. */
export function signBody(key: string, body: string | Buffer, nowMs = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000))
  const mac = createHmac('sha256', key).update(`${timestamp}.`).update(body).digest('hex')
  return { 'X-Espra-Timestamp': timestamp, 'X-Espra-Signature': `sha256=${mac}` }
}

/** Null when the headers sign `body` under `key` and the time is fresh; else why not. */
export function signatureProblem(key: string, body: string | Buffer, headers: { signature?: string | undefined; timestamp?: string | undefined }, nowMs = Date.now()): string | null {
  const { signature, timestamp } = headers
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return 'no X-Espra-Timestamp'
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > SIGNATURE_TOLERANCE_S) return 'timestamp too far from now (replay?)'
  const m = signature === undefined ? null : /^sha256=([0-9a-f]{64})$/.exec(signature)
  if (m === null) return 'no X-Espra-Signature: sha256=<hex>'
  const want = createHmac('sha256', key).update(`${timestamp}.`).update(body).digest()
  return timingSafeEqual(want, Buffer.from(m[1]!, 'hex')) ? null : 'signature does not match'
}
