/**
 * The admin API in one child: `/api/*` on the node's public port. Every
 * call goes through one sequence:
 *
 * 1. an address the parent blocked for failed authentications: 429;
 * 2. the bearer token: 401 without a valid one (the failure is counted);
 * 3. the route: 404 for an unknown path, 405 with `Allow` for a wrong method;
 * 4. a viewer calling a route that changes state: 403;
 * 5. the body (JSON only, capped) and the route's checks of path, query and
 *    body: 415 / 413 / 400, before anything is asked of the seed;
 * 6. `Idempotency-Key`: a stored answer replayed, 422 or 409;
 * 7. the operation, and its answer.
 *
 * Every state-changing call an operator makes (steps 4 to 7, refused or
 * done) writes one audit entry.
 *
 * A route whose body is bytes (`rawBody`: a push's file upload) gets it as
 * a stream instead of step 5's JSON; an answer given before that body has
 * all arrived closes the connection.
 *
 * A call without `Authorization` but with the dashboard's session cookie
 * (roles/admin/dashboard/) is the session's operator's: an unknown or
 * expired session is 401 (counted like a bad token), and a state-changing
 * call must pass the CSRF rule (roles/admin/dashboard/csrf.ts) before step 4,
 * else 403 `ESPRA_ERR_ADMIN_CSRF` (audited). A bearer token, when sent, is
 * what counts; the cookie is then ignored.
 */
import { createTrustedProxies } from '../../lib/core/client-address.js'
import { createError, toWire, type ErrorCode, ERRORS } from '../../lib/core/errors.js'
import type { AdminOperator } from '../../lib/core/options-admin.js'
import type { ChildContext, ChildHandle } from '../../lib/process/role.js'
import { answerLater, statusLine } from '../../lib/http/server.js'
import type { HttpResponse } from '../../lib/http/uws.js'
import { writeAudit } from './api-audit.js'
import { mayCall, createTokenChecker } from './api-auth.js'
import { BlockedAddresses, type AuthBlockedMessage, type AuthFailedRequest } from './api-auth-limit.js'
import type { ApiDeps } from './api-deps.js'
import { createEventStreams, type EventStream } from './api-events.js'
import { asObject, onlyQuery, queryFlag } from './api-fields.js'
import { checkIdempotencyKey, claimIdempotencyKey, requestHash } from './api-idempotency.js'
import { createJobRunner } from './api-jobs.js'
import { openRawBody, type RawBody } from './api-push-body.js'
import { createBlobUploads } from './api-push-upload.js'
import { BODY_METHODS, collectBody, parseBody, readRequest, type ApiRequest } from './api-request.js'
import { createRouter, type ApiAnswer, type ApiCall, type ApiRoute, type AuditFacts } from './api-router.js'
import { ALERT_ROUTES } from './api-routes-alerts.js'
import { AUDIT_ROUTES } from './api-routes-audit.js'
import { CLUSTER_ROUTES } from './api-routes-cluster.js'
import { DEPLOY_ROUTES } from './api-routes-deploy.js'
import { MAIL_ROUTES } from './api-routes-mail.js'
import { PUSH_ROUTES } from './api-routes-push.js'
import { openAdminSeedLink } from './api-seed-link.js'
import { startSweeps } from './api-sweeps.js'
import { loadAssets, SECURITY_HEADERS } from './dashboard/assets.js'
import { checkCsrf, readBrowserFacts, type BrowserFacts } from './dashboard/csrf.js'
import { HISTORY_ROUTES } from './dashboard/history-route.js'
import { createRegistryWatch } from './dashboard/registry-watch.js'
import { mountDashboard } from './dashboard/routes.js'
import { createSessionStore, sessionIdFrom, type Session } from './dashboard/sessions.js'

/** How often a stream opened with a dashboard session checks that the session still lives. */
const SESSION_STREAM_CHECK_MS = 5000

/** `GET /api/events` streams (roles/admin/api-events.ts): routed like the others, answered by the stream, not `run`. */
const EVENTS_ROUTE: ApiRoute<ApiDeps> = {
  method: 'GET', path: '/api/events', action: 'events.read', acts: false,
  check: (c) => (onlyQuery(c.query, ['nodes']), { target: null, params: {} }),
  run: () => Promise.reject(createError('ESPRA_ERR_INTERNAL', { reason: 'the events route streams' })),
}

interface Answer extends ApiAnswer {
  readonly headers?: Readonly<Record<string, string>>
  /** Close the connection after (a body left unread). */
  readonly close?: boolean
}

function errorAnswer(err: unknown): Answer {
  const wire = toWire(err)
  const status = ERRORS[wire.code as ErrorCode]?.status ?? 500
  const body = wire.code === 'ESPRA_ERR_INTERNAL' ? { code: wire.code, message: 'internal error' } : wire
  const headers: Record<string, string> = {}
  if (wire.code === 'ESPRA_ERR_HTTP_METHOD') headers['Allow'] = ((wire.details?.['allow'] as string[] | undefined) ?? []).join(', ')
  if (wire.code === 'ESPRA_ERR_ADMIN_UNAUTHORIZED') headers['WWW-Authenticate'] = 'Bearer realm="espra-admin"'
  if (typeof wire.details?.['retryAfter'] === 'number') headers['Retry-After'] = String(wire.details['retryAfter'])
  return { status, body, headers, close: wire.code === 'ESPRA_ERR_ADMIN_BODY_TOO_LARGE' }
}

function send(res: HttpResponse, a: Answer): void {
  answerLater(res, () => {
    res.writeStatus(statusLine(a.status)).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store')
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.writeHeader(name, value)
    for (const [name, value] of Object.entries(a.headers ?? {})) res.writeHeader(name, value)
    res.end(JSON.stringify(a.body), a.close === true)
  })
}

export async function startAdminApi(ctx: ChildContext) {
  const { config, log } = ctx
  const link = await openAdminSeedLink(config, log)
  const jobs = createJobRunner(link.client, link.datastore, log)
  const watch = createRegistryWatch(link, log)
  const deps: ApiDeps = { link, secret: config.secret, jobs, watch, uploads: createBlobUploads(link.client), seedAddress: () => link.client.seed ?? config.seed[0]! }
  const router = createRouter<ApiDeps>([...CLUSTER_ROUTES, ...DEPLOY_ROUTES, ...PUSH_ROUTES, ...MAIL_ROUTES, ...ALERT_ROUTES, ...AUDIT_ROUTES, ...HISTORY_ROUTES, EVENTS_ROUTE])
  const tokens = createTokenChecker(config.adminOperators)
  const trusted = createTrustedProxies(config.trustedProxies)
  const blocked = new BlockedAddresses()
  const events = createEventStreams(link, () => ctx.track(), watch)
  const sessions = createSessionStore(link.datastore, config.adminOperators)
  const sweeps = startSweeps(link.datastore, config.adminAuditRetention, log, sessions)
  if (config.adminOperators.length === 0) log.warn('no --admin-tokens-file: the admin API refuses every call (401)')
  ctx.parent.onMessage((body) => {
    const m = body as AuthBlockedMessage
    if (m?.k === 'auth-blocked') blocked.block(m.address, m.until)
  })

  /** The audit entry of one state-changing call; a failed write is logged, never the call's answer. */
  const audit = (request: ApiRequest, operator: AdminOperator, route: ApiRoute<ApiDeps>, facts: AuditFacts | null, answer: Answer, replayed = false): Promise<void> => {
    const code = (answer.body as { code?: unknown } | null)?.code
    return writeAudit(link.datastore, {
      at: Date.now(), operator: operator.name, role: operator.role, action: route.action,
      target: facts?.target ?? null, params: facts?.params ?? null, address: request.address,
      outcome: answer.status < 400 ? 'ok' : typeof code === 'string' ? code : 'ESPRA_ERR_INTERNAL', status: answer.status,
      ...(replayed ? { replayed: true as const } : {}),
    }).then(() => {}, (err: unknown) => log.error({ err, action: route.action, operator: operator.name }, 'audit entry not written'))
  }

  /** Steps 5 to 7 for a call whose operator may make it; resolves the answer (never rejects). */
  async function handle(request: ApiRequest, operator: AdminOperator, route: ApiRoute<ApiDeps>, params: Record<string, string>, bodyText: Promise<string>, raw: RawBody | null): Promise<Answer> {
    let facts: AuditFacts | null = null
    let answer: Answer
    let replayed = false
    try {
      const text = await bodyText
      const call: ApiCall = { params, query: request.query, body: asObject(parseBody(text)), operator, address: request.address, ...(raw !== null ? { raw } : {}) }
      facts = route.check(call)
      const key = route.acts && route.rawBody !== true && request.idempotencyKey !== null ? checkIdempotencyKey(request.idempotencyKey) : null
      const claim = key === null ? null : await claimIdempotencyKey(link.datastore, operator.name, key, requestHash(request.method, request.path, text))
      if (claim?.kind === 'replay') {
        replayed = true
        answer = { ...claim.answer, headers: { 'Idempotent-Replayed': 'true' } }
      } else {
        try {
          answer = await route.run(call, deps)
        } catch (err) {
          answer = errorAnswer(err)
        }
        await claim?.finish(answer).catch((err: unknown) => log.error({ err }, 'idempotency record not written'))
      }
    } catch (err) {
      answer = errorAnswer(err)
    }
    if (answer.status >= 500 && answer.status !== 501) log.error({ action: route.action, operator: operator.name, err: answer.body }, 'admin API call failed')
    if (route.acts) await audit(request, operator, route, facts, answer, replayed)
    return answer
  }

  /** Counts a failed authentication in the parent; resolves once counted, so the next call from the address already sees a block. */
  const authFailed = (address: string): Promise<void> => {
    const failed: AuthFailedRequest = { k: 'auth-failed', address }
    return ctx.parent.request<{ until: number | null }>(failed).then(() => {}, () => {})
  }

  /**
   * A stream opened with a session ends when the session does (logout on any child, expiry): checked every
   * {@link SESSION_STREAM_CHECK_MS}, so a logged-out browser stops receiving the cluster's events.
   */
  const endWithSession = (stream: EventStream, sessionId: string): void => {
    const timer = setInterval(() => {
      if (stream.closed) return clearInterval(timer)
      sessions.find(sessionId).then((found) => {
        if (found !== null) return
        clearInterval(timer)
        stream.end()
      }, () => {})
    }, SESSION_STREAM_CHECK_MS)
    timer.unref()
  }

  /** Whether the call's route takes its body as bytes (found again in `route`; an unknown path is answered there). */
  const takesBytes = (request: ApiRequest): boolean => {
    try {
      return router.match(request.method, request.path).route.rawBody === true
    } catch {
      return false
    }
  }

  /** Steps 3 on, for a call whose operator is known (by token, or by session with `session` set). */
  function route(reply: (a: Answer) => void, res: HttpResponse, request: ApiRequest, operator: AdminOperator, facts: BrowserFacts, session: { id: string; session: Session } | null, bodyText: Promise<string> | null, raw: RawBody | null): void {
    let match
    let withNodes = false
    try {
      match = router.match(request.method, request.path)
      if (match.route === EVENTS_ROUTE) {
        onlyQuery(request.query, ['nodes'])
        withNodes = queryFlag(request.query, 'nodes')
      }
    } catch (err) {
      return reply(errorAnswer(err))
    }
    const { route, params } = match
    if (route === EVENTS_ROUTE) {
      const stream = events.open(res, withNodes)
      if (session !== null) endWithSession(stream, session.id)
      return
    }
    if (session !== null && route.acts) {
      try {
        checkCsrf(facts, session.session.csrf)
      } catch (err) {
        const answer = errorAnswer(err)
        log.warn({ operator: operator.name, address: request.address, origin: facts.origin.slice(0, 200), path: request.path }, 'dashboard call refused: CSRF rule')
        void audit(request, operator, route, null, answer).then(() => reply(answer))
        return
      }
    }
    if (!mayCall(operator.role, route.acts)) {
      const answer = errorAnswer(createError('ESPRA_ERR_ADMIN_FORBIDDEN', { operator: operator.name, method: request.method, path: request.path }))
      void audit(request, operator, route, null, answer).then(() => reply(answer))
      return
    }
    // The body must be collected from inside the handler's own call, before any await (a session call began it already).
    const text = bodyText ?? (raw === null && BODY_METHODS.has(request.method) ? collectBody(res, request, config.adminMaxBody) : Promise.resolve(''))
    text.catch(() => {})
    void handle(request, operator, route, params, text, raw).then(reply)
  }

  ctx.app.any('/api/*', (res, req) => {
    const request = readRequest(res, req, trusted)
    const facts = readBrowserFacts(res, req, trusted)
    const raw = takesBytes(request) ? openRawBody(res, request.contentLength) : null
    // An answer before the body has all come: what is left is not read, so the connection cannot carry another request.
    const reply = (a: Answer): void => {
      if (raw === null || raw.complete) return send(res, a)
      raw.drop()
      send(res, { ...a, close: true })
    }
    const retryAfter = blocked.retryAfter(request.address, Date.now())
    if (retryAfter > 0) {
      return reply(errorAnswer(createError('ESPRA_ERR_ADMIN_RATE_LIMITED', { address: request.address, retryAfter })))
    }
    const sessionId = request.authorization === '' ? sessionIdFrom(facts.cookie) : null
    if (sessionId !== null) {
      const bodyText = raw === null && BODY_METHODS.has(request.method) ? collectBody(res, request, config.adminMaxBody) : Promise.resolve('')
      bodyText.catch(() => {})
      void sessions.find(sessionId).then(async (found) => {
        if (found !== null) return route(reply, res, request, found.operator, facts, { id: sessionId, session: found.session }, bodyText, raw)
        await authFailed(request.address)
        reply(errorAnswer(createError('ESPRA_ERR_ADMIN_UNAUTHORIZED', { reason: 'the dashboard session is unknown or expired: log in again at /dashboard/login' })))
      }, (err: unknown) => reply(errorAnswer(err)))
      return
    }
    const operator = tokens.check(request.authorization)
    if (operator === null) {
      const why = config.adminOperators.length === 0 ? 'this admin node has no --admin-tokens-file: nobody may call its API' : request.authorization === '' ? 'send Authorization: Bearer <token>' : 'the token is not one of --admin-tokens-file'
      void authFailed(request.address).then(() => {
        reply(errorAnswer(createError('ESPRA_ERR_ADMIN_UNAUTHORIZED', { reason: why })))
      })
      return
    }
    route(reply, res, request, operator, facts, null, null, raw)
  })

  mountDashboard({
    app: ctx.app, assets: loadAssets(), sessions, tokens, trusted, log,
    retryAfter: (address) => blocked.retryAfter(address, Date.now()),
    authFailed,
    audit: (request, operator, action, status, outcome) => writeAudit(link.datastore, {
      at: Date.now(), operator: operator.name, role: operator.role, action, target: null, params: null, address: request.address, outcome, status,
    }).then(() => {}, (err: unknown) => log.error({ err, action, operator: operator.name }, 'audit entry not written')),
  })

  // Event streams are tracked connections: they end when the drain begins, or the drain would wait for them.
  const stopStreams = (): void => {
    watch.close()
    events.close()
    sweeps.stop()
  }
  return {
    drain: stopStreams,
    async close() {
      stopStreams()
      await jobs.close()
      await link.close()
    },
    destroy() {
      stopStreams()
      link.client.destroy()
    },
  } satisfies ChildHandle
}
