// The dashboard over plain HTTP against a real seed and admin node: no session → redirect or 401; login sets an
// HttpOnly SameSite=Strict cookie (Secure and __Host- behind a trusted TLS proxy), a new id every time (fixation);
// forged and expired sessions refused; cookie calls that change state need the session's CSRF token and the node's
// own origin (403 ESPRA_ERR_ADMIN_CSRF, audited), bearer calls do not; logout ends the session everywhere; login
// brute force rate limited with the API's failed-auth limit; CSP and the other headers on every answer; assets
// served by name only; the history the charts read.
import { request } from 'node:http'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createSessionStore } from '../../../roles/admin/dashboard/sessions.js'
import { apiCall, startAdminApi, type ApiAnswer, type ApiCallOptions } from '../../helpers/admin-api.js'
import { waitFor } from '../../helpers/cluster.js'
import { client } from '../../helpers/seed.js'

const c = await startAdminApi(t, { 'admin-auth-failures': 3, 'admin-auth-window': '1m', 'trusted-proxies': '127.0.0.3' })
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)
const port = c.admin.port
const origin = `http://127.0.0.1:${port}`

/** A call with no bearer token, as a browser makes it. */
const browser = (method: string, path: string, opts: ApiCallOptions = {}): Promise<ApiAnswer> => apiCall(port, method, path, { token: null, ...opts })

async function login(token: string, headers: Record<string, string> = {}, from?: string): Promise<{ answer: ApiAnswer; cookie: string }> {
  const answer = await browser('POST', '/dashboard/login', { body: { token }, headers, ...(from ? { from } : {}) })
  const set = String(answer.headers['set-cookie'] ?? '')
  return { answer, cookie: set.split(';')[0]! }
}

const csrfOf = async (cookie: string): Promise<string> => (await browser('GET', '/dashboard/session', { headers: { cookie } })).json.csrf

t.test('without a session: the page redirects to the login, the API answers 401', async (t) => {
  const page = await browser('GET', '/dashboard/')
  t.equal(page.status, 303)
  t.equal(page.headers['location'], '/dashboard/login')
  t.equal((await browser('GET', '/')).headers['location'], '/dashboard/')
  const api = await browser('GET', '/api/nodes')
  t.equal(api.status, 401)
  t.equal(api.json.code, 'ESPRA_ERR_ADMIN_UNAUTHORIZED')
  const session = await browser('GET', '/dashboard/session')
  t.equal(session.status, 401)
  const loginPage = await browser('GET', '/dashboard/login')
  t.equal(loginPage.status, 200)
  t.match(loginPage.headers['content-type'], /^text\/html/)
})

t.test('login: the cookie, a new id every time, the session and its operator', async (t) => {
  const bad = await login('not-a-token')
  t.equal(bad.answer.status, 401)
  t.equal(bad.answer.json.code, 'ESPRA_ERR_ADMIN_UNAUTHORIZED')
  t.equal(bad.answer.headers['set-cookie'], undefined)
  const malformed = await browser('POST', '/dashboard/login', { body: { token: c.tokens.operator, extra: 1 } })
  t.match(malformed, { status: 400, json: { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field: 'token' } } })
  t.equal((await browser('POST', '/dashboard/login', { raw: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 415)
  t.match(await browser('POST', '/dashboard/login', { raw: '{"token": ', headers: { 'content-type': 'application/json' } }), { status: 400, json: { details: { field: 'body' } } })
  t.match(await browser('POST', '/dashboard/login', { body: { token: 'x'.repeat(5000) } }), { status: 413, json: { code: 'ESPRA_ERR_ADMIN_BODY_TOO_LARGE' } })
  t.match(await browser('POST', '/dashboard/login', { body: { token: 42 } }), { status: 400, json: { details: { field: 'token' } } })
  t.match(await browser('POST', '/dashboard/login', { body: ['x'] }), { status: 400 })

  const first = await login(c.tokens.operator)
  t.equal(first.answer.status, 200)
  t.match(first.answer.json, { operator: 'ops', role: 'operator' })
  const set = String(first.answer.headers['set-cookie'])
  t.match(set, /^espra_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/, 'HttpOnly, SameSite=Strict, expiring, not Secure over plain HTTP')
  const session = await browser('GET', '/dashboard/session', { headers: { cookie: first.cookie } })
  t.match(session.json, { operator: 'ops', role: 'operator', csrf: /^[A-Za-z0-9_-]{32}$/ })
  const nodes = await browser('GET', '/api/nodes', { headers: { cookie: first.cookie } })
  t.equal(nodes.status, 200, 'the API answers the session')
  t.ok(nodes.json.some((n: { role: string }) => n.role === 'admin'))
  const page = await browser('GET', '/dashboard/', { headers: { cookie: first.cookie } })
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html/)

  // Logging in again with the first cookie: a new id, and the first one ends (a planted id is never promoted).
  const second = await login(c.tokens.operator, { cookie: first.cookie })
  t.not(second.cookie, first.cookie)
  t.equal((await browser('GET', '/api/nodes', { headers: { cookie: first.cookie }, from: '127.0.0.7' })).status, 401, 'the old session ended')
  t.equal((await browser('GET', '/api/nodes', { headers: { cookie: second.cookie } })).status, 200)
  const planted = await login(c.tokens.operator, { cookie: 'espra_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })
  t.not(planted.cookie, 'espra_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'a planted id is replaced')

  const audit = (await c.api('GET', '/api/audit?limit=5')).json.entries
  t.match(audit[0], { action: 'session.login', operator: 'ops', outcome: 'ok' })
})

t.test('behind a trusted TLS proxy the cookie is Secure and __Host-', async (t) => {
  const viaProxy = await login(c.tokens.operator, { 'x-forwarded-proto': 'https' }, '127.0.0.3')
  t.match(String(viaProxy.answer.headers['set-cookie']), /^__Host-espra_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/)
  const untrusted = await login(c.tokens.operator, { 'x-forwarded-proto': 'https' })
  t.match(String(untrusted.answer.headers['set-cookie']), /^espra_session=.*HttpOnly; SameSite=Strict; Max-Age=43200$/, 'the header from an untrusted peer is ignored')
})

t.test('forged and expired sessions are refused', async (t) => {
  const forged = ['espra_session=' + 'x'.repeat(43), 'espra_session=../../etc/passwd', 'espra_session=', '__Host-espra_session=' + 'y'.repeat(43)]
  for (const [i, cookie] of forged.entries()) {
    // Each counts as a failed authentication: one address each, so none is blocked here.
    const a = await browser('GET', '/api/nodes', { headers: { cookie }, from: `127.0.0.${10 + i}` })
    t.equal(a.status, 401, cookie)
    t.match(a.json, { code: 'ESPRA_ERR_ADMIN_UNAUTHORIZED' })
  }
  const seedLink = client(t, c.metaPort)
  await seedLink.ready
  const store = createSessionStore(createDatastoreClient(seedLink), [{ name: 'ops', role: 'operator', tokenSha256: '0'.repeat(64) }])
  const { id } = await store.create({ name: 'ops', role: 'operator', tokenSha256: '0'.repeat(64) }, '127.0.0.1', Date.now() - 13 * 3600_000)
  const expired = await browser('GET', '/api/nodes', { headers: { cookie: `espra_session=${id}` }, from: '127.0.0.5' })
  t.equal(expired.status, 401, 'a session past its 12 h is refused')
  t.match(expired.json.message, /unknown or expired/)
  t.equal((await browser('GET', '/dashboard/', { headers: { cookie: `espra_session=${id}` }, from: '127.0.0.5' })).headers['location'], '/dashboard/login')
})

t.test('CSRF: cookie calls that change state need the token and this origin; bearer calls stay as they were', async (t) => {
  const { cookie } = await login(c.tokens.operator)
  const csrf = await csrfOf(cookie)
  const silence = { node: 'live-x', until: Date.now() + 3_600_000, comment: 'csrf test' }
  const noToken = await browser('POST', '/api/silences', { body: silence, headers: { cookie } })
  t.match(noToken, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF', message: /X-CSRF-Token/ } })
  const wrongToken = await browser('POST', '/api/silences', { body: silence, headers: { cookie, 'x-csrf-token': 'z'.repeat(32) } })
  t.match(wrongToken, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF' } })
  const otherOrigin = await browser('POST', '/api/silences', { body: silence, headers: { cookie, 'x-csrf-token': csrf, origin: 'http://evil.example' } })
  t.match(otherOrigin, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF', message: /origin http:\/\/evil\.example/ } })
  const crossSite = await browser('DELETE', '/api/maintenance', { headers: { cookie, 'x-csrf-token': csrf, 'sec-fetch-site': 'cross-site' } })
  t.match(crossSite, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF' } })
  t.same((await c.api('GET', '/api/silences')).json.filter((s: { comment: string }) => s.comment === 'csrf test'), [], 'nothing was silenced')
  const audit = (await c.api('GET', '/api/audit?limit=4')).json.entries
  t.match(audit[0], { action: 'maintenance.clear', outcome: 'ESPRA_ERR_ADMIN_CSRF', status: 403, operator: 'ops' })

  const ok = await browser('POST', '/api/silences', { body: silence, headers: { cookie, 'x-csrf-token': csrf, origin, 'sec-fetch-site': 'same-origin' } })
  t.equal(ok.status, 201, 'same origin with the token')
  t.match(ok.json, { by: 'ops', node: 'live-x' })
  const read = await browser('GET', '/api/silences', { headers: { cookie, origin: 'http://evil.example' } })
  t.equal(read.status, 200, 'reads need no token (SameSite=Strict keeps the cookie home anyway)')
  const bearer = await c.api('DELETE', `/api/silences/${ok.json.id}`, { headers: { origin: 'http://evil.example', cookie } })
  t.equal(bearer.status, 200, 'a bearer call is not a browser call: the token counts, the cookie is ignored')

  const login403 = await browser('POST', '/dashboard/login', { body: { token: c.tokens.operator }, headers: { origin: 'http://evil.example' } })
  t.match(login403, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF' } }, 'no login forced from another site')
  t.equal(login403.headers['set-cookie'], undefined)
})

t.test('a viewer session reads but may not act', async (t) => {
  const { cookie } = await login(c.tokens.viewer)
  const csrf = await csrfOf(cookie)
  t.equal((await browser('GET', '/api/builds', { headers: { cookie } })).status, 200)
  const act = await browser('POST', '/api/silences', { body: { node: 'a', until: Date.now() + 60_000 }, headers: { cookie, 'x-csrf-token': csrf } })
  t.match(act, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_FORBIDDEN' } })
})

t.test('logout ends the session (CSRF-checked) and clears the cookie', async (t) => {
  const { cookie } = await login(c.tokens.second)
  const csrf = await csrfOf(cookie)
  const forced = await browser('POST', '/dashboard/logout', { headers: { cookie } })
  t.match(forced, { status: 403, json: { code: 'ESPRA_ERR_ADMIN_CSRF' } }, 'no logout forced from elsewhere')
  const out = await browser('POST', '/dashboard/logout', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(out.status, 200)
  t.match(String(out.headers['set-cookie']), /^espra_session=; .*Max-Age=0/)
  t.equal((await browser('GET', '/api/nodes', { headers: { cookie }, from: '127.0.0.8' })).status, 401)
  t.match((await c.api('GET', '/api/audit?limit=1')).json.entries[0], { action: 'session.logout', operator: 'ops2' })
})

t.test('an event stream opened with a session ends when the session does', async (t) => {
  const { cookie } = await login(c.tokens.operator)
  const csrf = await csrfOf(cookie)
  let ended = false
  let received = ''
  const req = request({ host: '127.0.0.1', port, path: '/api/events?nodes=1', headers: { cookie }, agent: false }, (res) => {
    t.equal(res.statusCode, 200)
    res.on('data', (d: Buffer) => (received += d.toString('utf8')))
    res.on('end', () => (ended = true))
  })
  req.on('error', () => {})
  req.end()
  t.teardown(() => req.destroy())
  await waitFor('a node snapshot on the stream', async () => (received.includes('event: nodes') ? true : undefined), 20_000)
  t.equal((await browser('POST', '/dashboard/logout', { headers: { cookie, 'x-csrf-token': csrf } })).status, 200)
  await waitFor('the stream ended after logout', async () => (ended ? true : undefined), 30_000)
  t.pass('ended')
})

t.test('security headers on every answer; no inline script; assets by name only', async (t) => {
  const { cookie } = await login(c.tokens.operator)
  for (const [path, headers] of [['/dashboard/login', {}], ['/dashboard/', { cookie }], ['/api/nodes', { cookie }], ['/dashboard/assets/app.js', {}]] as const) {
    const a = await browser('GET', path, { headers })
    t.equal(a.status, 200, path)
    const csp = String(a.headers['content-security-policy'])
    t.match(csp, /default-src 'self'/, `${path}: CSP`)
    t.match(csp, /script-src 'self'(;|$)/)
    t.match(csp, /frame-ancestors 'none'/)
    t.notMatch(csp, /unsafe-inline|unsafe-eval/)
    t.equal(a.headers['x-content-type-options'], 'nosniff')
    t.equal(a.headers['referrer-policy'], 'no-referrer')
  }
  for (const path of ['/dashboard/login', '/dashboard/']) {
    const html = (await browser('GET', path, { headers: { cookie } })).body
    const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)]
    t.ok(scripts.length > 0)
    for (const s of scripts) {
      t.match(s[1], /src="\/dashboard\/assets\//, 'every script is a file of the node')
      t.equal(s[2], '', 'no inline script')
    }
    t.notMatch(html, /\son[a-z]+=|style=|https?:\/\//, 'no inline handlers, styles or other hosts')
  }
  const uplot = await browser('GET', '/dashboard/assets/uPlot.iife.min.js')
  t.equal(uplot.status, 200)
  t.match(uplot.headers['content-type'], /^text\/javascript/)
  t.match(uplot.body, /uPlot/)
  for (const path of ['/dashboard/assets/..%2Fsessions.js', '/dashboard/assets/nope.js', '/dashboard/assets/login.html', '/dashboard/assets/%2e%2e']) {
    t.equal((await browser('GET', path)).status, 404, path)
  }
  t.equal((await browser('GET', '/dashboard/nope')).status, 404)
})

t.test('GET /api/history: requests/s and connections per role, sampled from the registry', async (t) => {
  const h = await waitFor('a first sample', async () => {
    const a = await c.api('GET', '/api/history')
    return a.json?.samples?.length > 0 ? a.json : undefined
  })
  t.equal(h.intervalMs, 10_000)
  t.match(h.samples[0], { at: Number, roles: { admin: { nodes: 1, rps: Number, connections: Number }, seed: { nodes: 1 } } })
  t.match(await c.api('GET', '/api/history?x=1'), { status: 400, json: { details: { field: 'x' } } })
  t.match(await c.api('GET', '/api/events?colour=1'), { status: 400 })
  t.match(await c.api('GET', '/api/events?nodes=lots'), { status: 400, json: { details: { field: 'nodes' } } })
})

t.test('login brute force is rate limited with the API\'s failed-auth limit', async (t) => {
  const from = '127.0.0.2'
  // --admin-auth-failures 3: the 4th failure in the window blocks the address (it is still answered 401).
  for (let i = 0; i < 4; i++) t.equal((await login(`wrong-${i}`, {}, from)).answer.status, 401)
  const blocked = await login('wrong-again', {}, from)
  t.equal(blocked.answer.status, 429)
  t.equal(blocked.answer.json.code, 'ESPRA_ERR_ADMIN_RATE_LIMITED')
  t.ok(Number(blocked.answer.headers['retry-after']) > 0)
  const good = await login(c.tokens.operator, {}, from)
  t.equal(good.answer.status, 429, 'even the right token, until the window ends')
  t.equal(good.answer.headers['set-cookie'], undefined)
  t.equal((await login(c.tokens.operator)).answer.status, 200, 'another address is not blocked')
})
