// Idempotency-Key on the admin API's state-changing calls, against a real seed and admin node: the same key and
// body answer the first answer again without doing it again (a minted token comes back byte for byte; the audit
// log says replayed); another body is 422; another operator's same key is their own; a call still in progress
// (its pending record in the datastore) is 409; a bad key is 400.
import { createHash } from 'node:crypto'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { requestHash } from '../../../roles/admin/api-idempotency.js'
import { startAdminApi } from '../../helpers/admin-api.js'
import { waitFor } from '../../helpers/cluster.js'
import { client } from '../../helpers/seed.js'

const c = await startAdminApi(t)
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)

t.test('replay: the first answer again, nothing done again', async (t) => {
  // Upload tokens carry a random id: two mints never give the same token.
  const call = (key: string, body: unknown, token = c.tokens.operator) => c.api('POST', '/api/tokens/upload', { body, token, headers: { 'idempotency-key': key } })
  const first = await call('mint-1', {})
  t.equal(first.status, 201)
  t.notOk(first.headers['idempotent-replayed'])
  const again = await call('mint-1', {})
  t.equal(again.status, 201)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.json.token, first.json.token, 'the same token: not minted again')
  const other = await call('mint-2', {})
  t.not(other.json.token, first.json.token, 'another key mints anew')
  const mismatch = await call('mint-1', { maxSize: '2MB' })
  t.equal(mismatch.status, 422)
  t.equal(mismatch.json.code, 'ESPRA_ERR_ADMIN_IDEMPOTENCY_MISMATCH')
  const otherPath = await c.api('POST', '/api/tokens/live', { body: {}, headers: { 'idempotency-key': 'mint-1' } })
  t.equal(otherPath.status, 422, 'the same key on another route is a mismatch too')
  const secondOperator = await call('mint-1', {}, c.tokens.second)
  t.equal(secondOperator.status, 201)
  t.not(secondOperator.json.token, first.json.token, 'keys are per operator')
  const audit = (await c.api('GET', '/api/audit?limit=6')).json.entries
  t.match(audit, [
    { operator: 'ops2', action: 'token.upload', outcome: 'ok' },
    { operator: 'ops', action: 'token.live', outcome: 'ESPRA_ERR_ADMIN_IDEMPOTENCY_MISMATCH', status: 422 },
    { operator: 'ops', action: 'token.upload', outcome: 'ESPRA_ERR_ADMIN_IDEMPOTENCY_MISMATCH', status: 422 },
    { operator: 'ops', action: 'token.upload', outcome: 'ok' },
    { operator: 'ops', action: 'token.upload', outcome: 'ok', replayed: true },
    { operator: 'ops', action: 'token.upload', outcome: 'ok' },
  ])
  t.notOk('replayed' in audit[3], 'only the replay says replayed')
})

t.test('a state change replayed: maintenance set once, answered twice', async (t) => {
  const headers = { 'idempotency-key': 'maint-7' }
  const first = await c.api('POST', '/api/maintenance', { body: { until: '1h' }, headers })
  const second = await c.api('POST', '/api/maintenance', { body: { until: '1h' }, headers })
  t.equal(second.status, 200)
  t.same(second.json, first.json)
  t.equal((await c.api('GET', '/api/maintenance')).json.state.at, first.json.state.at, 'the maintenance was set once')
  // A refused call's answer is kept too (a 4xx): the same refusal, not a second try.
  await c.api('DELETE', '/api/maintenance')
  const refused = await c.api('POST', '/api/nodes/nobody/undrain', { headers: { 'idempotency-key': 'u-1' } })
  const replayed = await c.api('POST', '/api/nodes/nobody/undrain', { headers: { 'idempotency-key': 'u-1' } })
  t.same(replayed.json, refused.json)
  t.equal(replayed.headers['idempotent-replayed'], 'true')
})

t.test('a call still in progress with that key: 409, and nothing done', async (t) => {
  const seed = client(t, c.metaPort)
  await seed.ready
  const ds = createDatastoreClient(seed)
  // The record a child writes when it starts a call (roles/admin/api-idempotency.ts), as if that call were running now.
  const body = JSON.stringify({ until: '1h' })
  const key = `ops/${createHash('sha256').update('busy-1').digest('hex')}`
  await ds.put('adminIdempotency', key, { state: 'pending', request: requestHash('POST', '/api/maintenance', body), at: Date.now() })
  const busy = await c.api('POST', '/api/maintenance', { raw: body, headers: { 'content-type': 'application/json', 'idempotency-key': 'busy-1' } })
  t.equal(busy.status, 409)
  t.equal(busy.json.code, 'ESPRA_ERR_ADMIN_IDEMPOTENCY_IN_PROGRESS')
  t.equal((await c.api('GET', '/api/maintenance')).json.state, null, 'not done')
  // A record older than 24 h is not a replay: the call runs.
  await ds.put('adminIdempotency', key, { state: 'done', request: 'other', at: Date.now() - 25 * 3_600_000, status: 200, answer: '{}' })
  const fresh = await c.api('POST', '/api/maintenance', { raw: body, headers: { 'content-type': 'application/json', 'idempotency-key': 'busy-1' } })
  t.equal(fresh.status, 200)
  t.notOk(fresh.headers['idempotent-replayed'])
  await c.api('DELETE', '/api/maintenance')
})

t.test('a bad key is refused before anything is done', async (t) => {
  const a = await c.api('POST', '/api/maintenance', { body: { until: '1h' }, headers: { 'idempotency-key': 'x'.repeat(256) } })
  t.equal(a.status, 400)
  t.match(a.json, { details: { field: 'Idempotency-Key' } })
  t.equal((await c.api('GET', '/api/maintenance')).json.state, null)
})
