// The admin API's authentication against a real seed and admin node: no token and a wrong token are 401 with
// WWW-Authenticate; a viewer reads but acting is 403 (and audited); an operator acts; too many failed
// authentications from one address are 429 with Retry-After, even with a good token, until the window ends.
// Then the tokens file itself: its format, a file open to other users refused like the cluster secret, and an
// admin node without one refusing every call.
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { adminTokenLine, newAdminToken, parseAdminTokens, readAdminTokens } from '../../../lib/core/options-admin.js'
import { AuthFailureCounter } from '../../../roles/admin/api-auth-limit.js'
import { createTokenChecker } from '../../../roles/admin/api-auth.js'
import { apiCall, startAdminApi } from '../../helpers/admin-api.js'
import { startNode } from '../../helpers/cluster.js'
import { waitFor } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

const c = await startAdminApi(t, { 'admin-auth-failures': 10, 'admin-auth-window': '1h' })
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/nodes')).status === 200 || undefined)

t.test('no token, a malformed header and a wrong token: 401 with WWW-Authenticate, nothing read', async (t) => {
  const cases: Record<string, string>[] = [{}, { authorization: 'Basic b3BzOnB3' }, { authorization: `Bearer ${newAdminToken()}` }, { authorization: `Bearer ${c.tokens.operator}x` }]
  for (const headers of cases) {
    const a = await apiCall(c.admin.port, 'GET', '/api/nodes', { token: null, headers })
    t.equal(a.status, 401, JSON.stringify(headers))
    t.equal(a.json.code, 'ESPRA_ERR_ADMIN_UNAUTHORIZED')
    t.equal(a.headers['www-authenticate'], 'Bearer realm="espra-admin"')
    t.notOk(Array.isArray(a.json), 'no node list')
  }
})

t.test('a viewer reads; acting is 403 and audited as refused, and nothing changes', async (t) => {
  const nodes = await c.api('GET', '/api/nodes', { token: c.tokens.viewer })
  t.equal(nodes.status, 200)
  t.ok(nodes.json.some((n: { role: string }) => n.role === 'admin'), 'the admin node itself is listed')
  const acted = await c.api('POST', '/api/maintenance', { token: c.tokens.viewer, body: { until: '1h' } })
  t.equal(acted.status, 403)
  t.equal(acted.json.code, 'ESPRA_ERR_ADMIN_FORBIDDEN')
  t.match(acted.json.message, /operator watcher is a viewer/)
  t.equal((await c.api('GET', '/api/maintenance')).json.state, null, 'maintenance still off')
  const audit = await c.api('GET', '/api/audit?limit=1', { token: c.tokens.viewer })
  t.match(audit.json.entries[0], { operator: 'watcher', role: 'viewer', action: 'maintenance.set', outcome: 'ESPRA_ERR_ADMIN_FORBIDDEN', status: 403, address: '127.0.0.1' })
})

t.test('an operator acts', async (t) => {
  const on = await c.api('POST', '/api/maintenance', { body: { until: '10m', message: 'upgrading' } })
  t.equal(on.status, 200)
  t.equal(on.json.state.message, 'upgrading')
  const off = await c.api('DELETE', '/api/maintenance')
  t.equal(off.status, 200)
  t.equal(off.json.cleared, true)
  const audit = await c.api('GET', '/api/audit?limit=2')
  t.match(audit.json.entries, [{ operator: 'ops', action: 'maintenance.clear', outcome: 'ok' }, { operator: 'ops', action: 'maintenance.set', outcome: 'ok', params: { message: 'upgrading', forMs: 600_000 } }])
})

// From 127.0.0.2 (loopback too): the other tests call from 127.0.0.1, which this one must not block.
t.test('failed authentications past --admin-auth-failures: 429 with Retry-After, a good token included; per address', async (t) => {
  const from = '127.0.0.2'
  for (let i = 0; i < 10; i++) t.equal((await c.api('GET', '/api/status', { token: 'wrong', from })).status, 401, `failure ${i + 1} of 10 allowed`)
  const crossing = await c.api('GET', '/api/status', { token: 'wrong', from })
  t.equal(crossing.status, 401, 'the failure that crosses the limit is still answered 401')
  const blocked = await c.api('GET', '/api/status', { from })
  t.equal(blocked.status, 429)
  t.equal(blocked.json.code, 'ESPRA_ERR_ADMIN_RATE_LIMITED')
  const retryAfter = Number(blocked.headers['retry-after'])
  t.ok(retryAfter > 3000 && retryAfter <= 3600, `Retry-After is the rest of the 1h window (${retryAfter}s)`)
  t.equal((await c.api('GET', '/api/status')).status, 200, '127.0.0.1 is not blocked')
})

t.test('the tokens file: format, duplicates, modes', async (t) => {
  const token = newAdminToken()
  t.match(token, /^espra_admin_[A-Za-z0-9_-]{43}$/)
  const line = adminTokenLine('alice', 'operator', token)
  t.same(parseAdminTokens(`# comment\n\n${line}\n`, 'f'), [{ name: 'alice', role: 'operator', tokenSha256: line.split(' ')[2] }])
  const refusals: [string, RegExp][] = [
    ['alice operator', /line 1: must be "<name> <role> <sha256 of the token>"/],
    [`alice admin ${'a'.repeat(64)}`, /line 1: the role must be one of viewer, operator \(got 'admin'\)/],
    [`alice viewer ${token}`, /line 1: the third field must be the token's sha256/],
    [`../x viewer ${'a'.repeat(64)}`, /line 1: the name must be/],
    [`a viewer ${'a'.repeat(64)}\na operator ${'b'.repeat(64)}`, /line 2: operator 'a' is listed twice/],
    [`a viewer ${'a'.repeat(64)}\nb operator ${'a'.repeat(64)}`, /line 2: two operators share one token/],
  ]
  for (const [text, message] of refusals) t.throws(() => parseAdminTokens(text, 'f'), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, text)
  const dir = testDir('espra-admin-tokens-')
  const file = join(dir, 'admin-tokens')
  writeFileSync(file, `${line}\n`)
  chmodSync(file, 0o644)
  t.throws(() => readAdminTokens(file, false), { code: 'ESPRA_ERR_SECRET_INSECURE', message: /is open to other users \(mode 0644\); run: chmod 600/ })
  t.equal(readAdminTokens(file, true).length, 1, 'accepted with --insecure-secret-file')
  chmodSync(file, 0o600)
  t.equal(readAdminTokens(file, false)[0]!.name, 'alice')
  t.throws(() => readAdminTokens(join(dir, 'none'), false), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /cannot read it \(ENOENT\)/ })
})

t.test('the token check compares hashes: only the exact token, with the Bearer scheme', async (t) => {
  const token = newAdminToken()
  const check = createTokenChecker(parseAdminTokens(adminTokenLine('bob', 'viewer', token), 'f'))
  t.equal(check.check(`Bearer ${token}`)?.name, 'bob')
  t.equal(check.check(`bearer ${token}`)?.name, 'bob', 'the scheme is case-insensitive')
  for (const bad of ['', token, `Bearer ${token.slice(0, -1)}`, `Bearer ${token} x`, `Basic ${token}`, `Bearer ${'x'.repeat(2000)}`]) t.equal(check.check(bad), null, bad.slice(0, 40))
})

t.test('the failure counter: a window per address, opened by its first failure', async (t) => {
  const counter = new AuthFailureCounter(2, 1000)
  t.equal(counter.fail('a', 0), null)
  t.equal(counter.fail('a', 10), null)
  t.equal(counter.fail('b', 20), null, 'another address counts apart')
  t.equal(counter.fail('a', 30), 1000, 'the third failure blocks until the window ends')
  t.equal(counter.fail('a', 1000), null, 'a new window starts afresh')
})

t.test('an admin node without --admin-tokens-file refuses every call; a world-readable one does not start', async (t) => {
  const bare = await startNode(t, 'admin', { seed: c.seedAddress, children: 1 })
  const a = await apiCall(bare.port, 'GET', '/api/status', { token: c.tokens.operator })
  t.equal(a.status, 401)
  t.match(a.json.message, /no --admin-tokens-file: nobody may call its API/)
  const dir = testDir('espra-admin-tokens-')
  const file = join(dir, 'admin-tokens')
  writeFileSync(file, `${adminTokenLine('x', 'viewer', newAdminToken())}\n`, { mode: 0o644 })
  chmodSync(file, 0o644)
  const refused = await startNode(t, 'admin', { seed: c.seedAddress, children: 1, 'admin-tokens-file': file }, { noWait: true })
  const { code } = await refused.exited
  t.not(code, 0)
  t.match(refused.stderr(), /^espra-node: --admin-tokens-file: .* is open to other users \(mode 0644\); run: chmod 600 /)
})
