// Upload tokens: mint records the id, verify checks signature, shape and expiry, types match with wildcards,
// a Live token never passes as an upload token (separate key label), bad options name the option.
import t from 'tap'
import { deriveTokenKey, mintToken, signClaims } from '../../../lib/live/token.js'
import type { Datastore, DatastoreValue } from '../../../lib/storage/datastore.js'
import { deriveUploadKey, mintUploadToken, typeAllowed, verifyUploadToken } from '../../../lib/uploads/token.js'

const SECRET = 'unit-test-secret-0123456789'
const key = deriveUploadKey(SECRET)

function memoryStore(): Pick<Datastore, 'put'> & { records: Map<string, DatastoreValue> } {
  const records = new Map<string, DatastoreValue>()
  return { records, put: async (kind, k, value) => void records.set(`${kind}/${k}`, value) }
}

t.test('mint records the id; verify returns the claims', async (t) => {
  const store = memoryStore()
  const token = await mintUploadToken(key, store, { maxSize: 1000, types: ['Image/PNG', 'text/*'], ttlMs: 60_000, owner: 'u', channel: 'up:1', now: 1_000_000 })
  const result = verifyUploadToken(key, token, 1_000_000)
  t.ok(result.ok)
  if (!result.ok) return
  t.match(result.claims, { v: 1, maxSize: 1000, types: ['image/png', 'text/*'], owner: 'u', channel: 'up:1', exp: 1060 })
  t.same([...store.records.keys()], [`uploadTokens/${result.claims.id}`])
  t.match(store.records.get(`uploadTokens/${result.claims.id}`), { exp: 1060, owner: 'u' })
  t.ok(typeAllowed(result.claims, 'image/png'))
  t.ok(typeAllowed(result.claims, 'text/plain; charset=utf-8'))
  t.notOk(typeAllowed(result.claims, 'image/jpeg'))
  t.notOk(typeAllowed(result.claims, 'texts/plain'))
})

t.test('expired, forged, malformed, another kind of token', async (t) => {
  const token = await mintUploadToken(key, memoryStore(), { maxSize: 1, ttlMs: 1000, now: 0 })
  t.match(verifyUploadToken(key, token, 1000), { ok: false, reason: 'expired' })
  t.match(verifyUploadToken(deriveUploadKey('another-secret-0123456789'), token, 0), { ok: false, reason: 'forged' })
  t.match(verifyUploadToken(key, 'nodot', 0), { ok: false, reason: 'malformed' })
  const live = mintToken(deriveTokenKey(SECRET), { sub: ['a'], ttlMs: 60_000 })
  t.match(verifyUploadToken(key, live), { ok: false, reason: 'forged' }, 'a Live token signed with the same secret is refused')
})

t.test('bad options name the option', async (t) => {
  const store = memoryStore()
  await t.rejects(mintUploadToken(key, store, { maxSize: 0, ttlMs: 1 }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /--max-size/ })
  await t.rejects(mintUploadToken(key, store, { maxSize: 1, types: ['png'], ttlMs: 1 }), { message: /--types/ })
  await t.rejects(mintUploadToken(key, store, { maxSize: 1, ttlMs: 0 }), { message: /--ttl/ })
  await t.rejects(mintUploadToken(key, store, { maxSize: 1, ttlMs: 1, channel: 'bad channel' }), { message: /--channel/ })
  await t.rejects(mintUploadToken(key, store, { maxSize: 1, ttlMs: 1, owner: '' }), { message: /--owner/ })
  t.equal(store.records.size, 0, 'nothing recorded for a refused token')
})

t.test('inline: carried only when asked for, and only as true', async (t) => {
  const plain = verifyUploadToken(key, await mintUploadToken(key, memoryStore(), { maxSize: 1, ttlMs: 60_000 }))
  t.ok(plain.ok && plain.claims.inline === undefined, 'not inline unless asked')
  const inline = verifyUploadToken(key, await mintUploadToken(key, memoryStore(), { maxSize: 1, ttlMs: 60_000, inline: true }))
  t.ok(inline.ok && inline.claims.inline === true)
  await t.rejects(mintUploadToken(key, memoryStore(), { maxSize: 1, ttlMs: 1, inline: 'yes' as unknown as boolean }), { message: /--inline/ })
  const forged = signClaims(key, { v: 1, id: 'a'.repeat(22), maxSize: 1, types: [], exp: 2e9, inline: 'yes' })
  t.match(verifyUploadToken(key, forged), { ok: false, reason: 'malformed' }, 'a claim of another shape is refused')
})
