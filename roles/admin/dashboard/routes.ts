/**
 * The dashboard's own HTTP routes on the admin node's public port (the data
 * comes from `/api/*`, called with the session cookie):
 *
 * - `GET /` → `/dashboard/`;
 * - `GET /dashboard/` the app shell, or 303 to the login page without a live session;
 * - `GET /dashboard/login` the login page;
 * - `POST /dashboard/login` `{token}` → 200 `{operator, role, expiresAt}` and the session cookie;
 * - `POST /dashboard/logout` → 200, the session ended and the cookie cleared (CSRF-checked);
 * - `GET /dashboard/session` → `{operator, role, csrf, expiresAt}` or 401;
 * - `GET /dashboard/assets/<name>` the page modules, stylesheet and uPlot.
 *
 * Logins count against the same failed-authentication limit as bad bearer
 * tokens (roles/admin/api-auth-limit.ts), per client address, per node.
 */
import { createError, toWire, ERRORS, type ErrorCode } from '../../../lib/core/errors.js'
import type { AdminOperator } from '../../../lib/core/options-admin.js'
import type { Logger } from '../../../lib/core/log.js'
import { answerLater, statusLine } from '../../../lib/http/server.js'
import type { HttpResponse, TemplatedApp } from '../../../lib/http/uws.js'
import type { TokenChecker } from '../api-auth.js'
import { readRequest, collectBody, parseBody, type ApiRequest } from '../api-request.js'
import type { TrustedProxies } from '../../../lib/core/client-address.js'
import { ASSET_NAME, SECURITY_HEADERS, type Asset } from './assets.js'
import { checkCsrf, checkSameOrigin, readBrowserFacts, type BrowserFacts } from './csrf.js'
import { clearedCookie, sessionCookie, sessionIdFrom, type Session, type SessionStore } from './sessions.js'

/** A login body is one token: nothing bigger is read. */
const MAX_LOGIN_BODY = 4096

export interface DashboardDeps {
  readonly app: TemplatedApp
  readonly assets: ReadonlyMap<string, Asset>
  readonly sessions: SessionStore
  readonly tokens: TokenChecker
  readonly trusted: TrustedProxies
  readonly log: Logger
  /** Seconds an address is still blocked for failed authentications (0: not blocked). */
  retryAfter(address: string): number
  /** Counts one failed authentication in the parent; resolves once counted. */
  authFailed(address: string): Promise<void>
  /** Writes the audit entry of a login or logout. */
  audit(request: ApiRequest, operator: AdminOperator, action: string, status: number, outcome: string): Promise<void>
}

interface Answer {
  status: number
  body: string | Buffer
  type?: string
  headers?: Record<string, string>
}

function write(res: HttpResponse, a: Answer): void {
  answerLater(res, () => {
    res.writeStatus(statusLine(a.status))
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.writeHeader(name, value)
    res.writeHeader('Content-Type', a.type ?? 'application/json').writeHeader('Cache-Control', a.headers?.['Cache-Control'] ?? 'no-store')
    for (const [name, value] of Object.entries(a.headers ?? {})) if (name !== 'Cache-Control') res.writeHeader(name, value)
    res.end(a.body)
  })
}

const json = (status: number, body: unknown, headers?: Record<string, string>): Answer => ({ status, body: JSON.stringify(body), ...(headers ? { headers } : {}) })

function errorJson(err: unknown, headers: Record<string, string> = {}): Answer {
  const wire = toWire(err)
  const status = ERRORS[wire.code as ErrorCode]?.status ?? 500
  if (typeof wire.details?.['retryAfter'] === 'number') headers['Retry-After'] = String(wire.details['retryAfter'])
  return json(status, wire.code === 'ESPRA_ERR_INTERNAL' ? { code: wire.code, message: 'internal error' } : wire, headers)
}

const redirect = (to: string): Answer => ({ status: 303, body: '', type: 'text/plain', headers: { Location: to } })

export function mountDashboard(d: DashboardDeps): void {
  const { app, assets, sessions } = d

  /** The live session of a request's cookie, or null (a cookie that names none counts as a failed authentication). */
  async function sessionOf(request: ApiRequest, facts: BrowserFacts): Promise<{ id: string; session: Session; operator: AdminOperator } | null> {
    const id = sessionIdFrom(facts.cookie)
    if (id === null) return null
    const found = await sessions.find(id)
    if (found === null) {
      await d.authFailed(request.address)
      return null
    }
    return { id, ...found }
  }

  const blockedAnswer = (request: ApiRequest): Answer | null => {
    const retryAfter = d.retryAfter(request.address)
    if (retryAfter === 0) return null
    return errorJson(createError('ESPRA_ERR_ADMIN_RATE_LIMITED', { address: request.address, retryAfter }))
  }

  const html = (name: string): Answer => ({ status: 200, body: assets.get(name)!.body, type: assets.get(name)!.type })

  app.get('/', (res) => write(res, redirect('/dashboard/')))
  app.get('/dashboard', (res) => write(res, redirect('/dashboard/')))

  app.get('/dashboard/', (res, req) => {
    const request = readRequest(res, req, d.trusted)
    const facts = readBrowserFacts(res, req, d.trusted)
    if (sessionIdFrom(facts.cookie) === null) return write(res, redirect('/dashboard/login'))
    void sessionOf(request, facts).then(
      (s) => write(res, s === null ? { ...redirect('/dashboard/login'), headers: { Location: '/dashboard/login', 'Set-Cookie': clearedCookie(facts.secure) } } : html('app.html')),
      (err: unknown) => write(res, errorJson(err)),
    )
  })

  app.get('/dashboard/login', (res) => write(res, html('login.html')))

  app.post('/dashboard/login', (res, req) => {
    const request = readRequest(res, req, d.trusted)
    const facts = readBrowserFacts(res, req, d.trusted)
    const body = collectBody(res, request, MAX_LOGIN_BODY)
    body.catch(() => {})
    void (async (): Promise<Answer> => {
      const blocked = blockedAnswer(request)
      if (blocked !== null) return blocked
      checkSameOrigin(facts)
      const parsed = parseBody(await body) as { token?: unknown } | undefined
      const token = parsed?.token
      if (typeof token !== 'string' || token.length === 0 || token.length > 512 || Object.keys(parsed ?? {}).length !== 1) {
        throw createError('ESPRA_ERR_ADMIN_BAD_REQUEST', { field: 'token', reason: 'send {"token": "<an operator token>"}' })
      }
      const operator = d.tokens.check(`Bearer ${token}`)
      if (operator === null) {
        await d.authFailed(request.address)
        throw createError('ESPRA_ERR_ADMIN_UNAUTHORIZED', { reason: 'the token is not one of --admin-tokens-file' })
      }
      // A new id every time: a cookie the browser had (planted or old) is ended, never promoted.
      const old = sessionIdFrom(facts.cookie)
      if (old !== null) await sessions.end(old).catch(() => false)
      const { id, session } = await sessions.create(operator, request.address)
      await d.audit(request, operator, 'session.login', 200, 'ok')
      d.log.info({ operator: operator.name, address: request.address }, 'dashboard login')
      return json(200, { operator: operator.name, role: operator.role, expiresAt: session.expiresAt }, { 'Set-Cookie': sessionCookie(id, facts.secure) })
    })().then((a) => write(res, a), (err: unknown) => write(res, errorJson(err)))
  })

  app.post('/dashboard/logout', (res, req) => {
    const request = readRequest(res, req, d.trusted)
    const facts = readBrowserFacts(res, req, d.trusted)
    void (async (): Promise<Answer> => {
      const s = await sessionOf(request, facts)
      if (s === null) return json(200, { loggedOut: false }, { 'Set-Cookie': clearedCookie(facts.secure) })
      checkCsrf(facts, s.session.csrf)
      await sessions.end(s.id)
      await d.audit(request, s.operator, 'session.logout', 200, 'ok')
      return json(200, { loggedOut: true }, { 'Set-Cookie': clearedCookie(facts.secure) })
    })().then((a) => write(res, a), (err: unknown) => write(res, errorJson(err)))
  })

  app.get('/dashboard/session', (res, req) => {
    const request = readRequest(res, req, d.trusted)
    const facts = readBrowserFacts(res, req, d.trusted)
    void (async (): Promise<Answer> => {
      const blocked = blockedAnswer(request)
      if (blocked !== null) return blocked
      const s = await sessionOf(request, facts)
      if (s === null) throw createError('ESPRA_ERR_ADMIN_UNAUTHORIZED', { reason: 'no session, or it expired: log in at /dashboard/login' })
      return json(200, { operator: s.operator.name, role: s.operator.role, csrf: s.session.csrf, expiresAt: s.session.expiresAt })
    })().then((a) => write(res, a), (err: unknown) => write(res, errorJson(err)))
  })

  app.get('/dashboard/assets/:name', (res, req) => {
    const name = req.getParameter(0) ?? ''
    const asset = ASSET_NAME.test(name) ? assets.get(name) : undefined
    if (asset === undefined || name.endsWith('.html')) return write(res, errorJson(createError('ESPRA_ERR_HTTP_NOT_FOUND', { what: 'dashboard asset', path: name.slice(0, 64), hint: 'the dashboard is at /dashboard/' })))
    write(res, { status: 200, body: asset.body, type: asset.type, headers: { 'Cache-Control': 'no-cache' } })
  })

  app.any('/dashboard/*', (res, req) => {
    write(res, errorJson(createError('ESPRA_ERR_HTTP_NOT_FOUND', { what: 'dashboard page', path: req.getUrl().slice(0, 200), hint: 'the dashboard is at /dashboard/' })))
  })
}
