// The dashboard's cookie and CSRF rules without a server: cookie parsing and attributes, and every branch of the
// same-origin and token checks (each refusal a 403 ESPRA_ERR_ADMIN_CSRF with a message that says why).
import t from 'tap'
import { checkCsrf, checkSameOrigin, type BrowserFacts } from '../../../roles/admin/dashboard/csrf.js'
import { clearedCookie, cookieName, sessionCookie, sessionIdFrom } from '../../../roles/admin/dashboard/sessions.js'
import { summarise } from '../../../roles/admin/dashboard/registry-watch.js'
import type { NodeView } from '../../../lib/cli/admin/format.js'

const facts = (over: Partial<BrowserFacts> = {}): BrowserFacts => ({ cookie: '', origin: '', fetchSite: '', host: 'admin.internal:8085', csrfToken: '', secure: false, ...over })
const refused = (run: () => void, message: RegExp, note = 'refused') => t.throws(run, { code: 'ESPRA_ERR_ADMIN_CSRF', message }, note)

t.test('the session cookie', async (t) => {
  const id = 'a'.repeat(43)
  t.equal(sessionCookie(id, false), `espra_session=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200`)
  t.equal(sessionCookie(id, true), `__Host-espra_session=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure`)
  t.equal(clearedCookie(false), 'espra_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0')
  t.equal(cookieName(true), '__Host-espra_session')
  t.equal(sessionIdFrom(`theme=dark; espra_session=${id}; other=1`), id)
  t.equal(sessionIdFrom(`__Host-espra_session=${id}`), id)
  t.equal(sessionIdFrom('xespra_session=1; espra_sessionx=2'), null, 'names match exactly')
  t.equal(sessionIdFrom(''), null)
  t.equal(sessionIdFrom(`espra_session=${'b'.repeat(9000)}`), null, 'an oversized header is not read')
})

t.test('same origin: Sec-Fetch-Site and Origin', async () => {
  checkSameOrigin(facts())
  checkSameOrigin(facts({ fetchSite: 'same-origin', origin: 'http://admin.internal:8085' }))
  checkSameOrigin(facts({ secure: true, origin: 'https://admin.internal:8085' }))
  refused(() => checkSameOrigin(facts({ fetchSite: 'cross-site' })), /Sec-Fetch-Site: cross-site/)
  refused(() => checkSameOrigin(facts({ fetchSite: 'same-site' })), /another site/)
  refused(() => checkSameOrigin(facts({ origin: 'http://evil.example' })), /origin http:\/\/evil\.example, not this node's http:\/\/admin\.internal:8085/)
  refused(() => checkSameOrigin(facts({ origin: 'https://admin.internal:8085' })), /not this node's/, 'another scheme is another origin')
  refused(() => checkSameOrigin(facts({ origin: 'null' })), /origin null/, 'an opaque origin (sandboxed frame, data: URL)')
})

t.test('the CSRF token', async () => {
  const token = 'c'.repeat(32)
  checkCsrf(facts({ csrfToken: token }), token)
  refused(() => checkCsrf(facts(), token), /must send X-CSRF-Token/)
  refused(() => checkCsrf(facts({ csrfToken: 'd'.repeat(32) }), token), /not this session's/)
  refused(() => checkCsrf(facts({ csrfToken: token.slice(1) }), token), /not this session's/)
  refused(() => checkCsrf(facts({ csrfToken: token, origin: 'http://evil.example' }), token), /origin/, 'the right token from another origin')
})

t.test('a history sample sums each role', async (t) => {
  const node = (id: string, role: string, rps: number, connections: number) => ({ id, role, load: { rps, connections, rssBytes: 0, lagMs: 0 } }) as unknown as NodeView
  t.same(summarise([node('a', 'live', 1.25, 3), node('b', 'live', 2.5, 4), node('c', 'proxy', 0, 1)], 5), {
    at: 5, roles: { live: { nodes: 2, rps: 3.8, connections: 7 }, proxy: { nodes: 1, rps: 0, connections: 1 } },
  })
  t.same(summarise([], 1), { at: 1, roles: {} })
})
