// Webhook signatures: what the sender puts in the headers verifies over the raw body with the shared key,
// and a changed body, another key or an old timestamp (a replay) does not.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { signatureProblem, signBody } from '../../../lib/alerts/signature.js'

const KEY = 'webhook-key-0123456789abcdef'

t.test('a signed body verifies; tampering, another key or a stale timestamp do not', async (t) => {
  const body = JSON.stringify({ event: 'opened', alert: { id: 'x' } })
  const now = 1_800_000_000_000
  const h = signBody(KEY, body, now)
  t.equal(h['X-Espra-Timestamp'], '1800000000')
  // What a receiver in any language computes: HMAC-SHA256(key, "<timestamp>.<body>") in hex.
  t.equal(h['X-Espra-Signature'], `sha256=${createHmac('sha256', KEY).update(`1800000000.${body}`).digest('hex')}`)
  const headers = { signature: h['X-Espra-Signature'], timestamp: h['X-Espra-Timestamp'] }
  t.equal(signatureProblem(KEY, body, headers, now + 1000), null)
  t.equal(signatureProblem(KEY, `${body} `, headers, now), 'signature does not match')
  t.equal(signatureProblem('another-key-0123456789abcdef', body, headers, now), 'signature does not match')
  t.equal(signatureProblem(KEY, body, headers, now + 301_000), 'timestamp too far from now (replay?)')
  t.equal(signatureProblem(KEY, body, { signature: headers.signature }, now), 'no X-Espra-Timestamp')
  t.equal(signatureProblem(KEY, body, { timestamp: headers.timestamp, signature: 'md5=abc' }, now), 'no X-Espra-Signature: sha256=<hex>')
})
