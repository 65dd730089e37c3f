// Capability tokens: what verifies, what does not (forged, expired, malformed), and pattern matching.
import t from 'tap'
import { compilePatterns, isChannel } from '../../../lib/live/channel.js'
import { compileGrant, deriveTokenKey, mintToken, verifyToken } from '../../../lib/live/token.js'

const key = deriveTokenKey('test-cluster-secret-0123456789')

t.test('a minted token verifies and grants exactly its patterns', async (t) => {
  const tok = mintToken(key, { sub: ['room:*'], pub: ['room:42'], ttlMs: 60_000, user: 'u1', info: { name: 'U' } })
  const v = verifyToken(key, tok)
  t.ok(v.ok)
  if (!v.ok) return
  t.match(v.claims, { v: 1, user: 'u1', info: { name: 'U' } })
  const g = compileGrant(v.claims)
  t.ok(g.can('sub', 'room:1'))
  t.ok(g.can('sub', 'room:'))
  t.notOk(g.can('sub', 'rooms:1'), 'the prefix must match whole')
  t.ok(g.can('pub', 'room:42'))
  t.notOk(g.can('pub', 'room:420'))
  t.notOk(g.can('presence', 'room:1'))
})

t.test('forged, expired and malformed tokens are refused with their reason', async (t) => {
  const tok = mintToken(key, { sub: ['*'], ttlMs: 60_000 })
  t.same(verifyToken(deriveTokenKey('another-secret-0123456789'), tok), { ok: false, reason: 'forged' })
  const [payload, sig] = tok.split('.')
  const widened = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), pub: ['*'] })).toString('base64url')
  t.same(verifyToken(key, `${widened}.${sig}`), { ok: false, reason: 'forged' }, 'changed claims break the signature')
  t.same(verifyToken(key, mintToken(key, { sub: ['*'], ttlMs: 1000, now: Date.now() - 5000 })), { ok: false, reason: 'expired' })
  for (const bad of ['', 'abc', '.x', 'x'.repeat(5000)]) t.notOk(verifyToken(key, bad).ok, `malformed: ${bad.slice(0, 10)}`)
  t.throws(() => mintToken(key, { sub: ['bad name'], ttlMs: 1000 }), { code: 'ESPRA_ERR_CONFIG_INVALID' })
  t.throws(() => mintToken(key, { ttlMs: 0 }), { code: 'ESPRA_ERR_CONFIG_INVALID' })
})

t.test('channel names and patterns', async (t) => {
  for (const ok of ['a', 'room:42', 'user@x.y', 'a_b-c', 'x'.repeat(128)]) t.ok(isChannel(ok), ok)
  for (const bad of ['', 'a b', 'a/b', 'a*', 'x'.repeat(129), 'é', 5, null]) t.notOk(isChannel(bad), String(bad))
  const m = compilePatterns(['news:*', 'status', '*:pub'])
  t.ok(m('news:1') && m('status') && m('x:pub'))
  t.notOk(m('statuses') || m('new:1'))
  t.notOk(compilePatterns([])('x'))
  t.ok(compilePatterns(['*'])('anything'))
})
