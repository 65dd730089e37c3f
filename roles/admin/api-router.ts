/**
 * The admin API's route table, compiled once: each route is a method, a path
 * pattern (`/api/nodes/:id`), the audit action it performs and whether it
 * changes state (operators only, audited, Idempotency-Key honoured). A path
 * no route has is 404; a path some route has with another method is 405
 * with `Allow`.
 */
import { createError } from '../../lib/core/errors.js'
import type { AdminOperator } from '../../lib/core/options-admin.js'
import type { Body } from './api-fields.js'
import type { RawBody } from './api-push-body.js'

export type ApiMethod = 'GET' | 'POST' | 'PUT' | 'DELETE'

/** One call as a route sees it: everything read from the request before the first `await`. */
export interface ApiCall {
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** The JSON body (an object), `{}` without one. */
  readonly body: Body
  readonly operator: AdminOperator
  readonly address: string
  /** The body as bytes, for a route with `rawBody` (its `body` is then `{}`). */
  readonly raw?: RawBody
}

/** What a route answers: a status and a JSON body. */
export interface ApiAnswer {
  readonly status: number
  readonly body: unknown
}

/** What a state-changing route records in the audit log besides its outcome. */
export interface AuditFacts {
  /** What it acted on (a node id, a build id, a host); null when the whole cluster. */
  readonly target: string | null
  /** Its checked parameters, never a secret. */
  readonly params: Record<string, unknown>
}

export interface ApiRoute<D> {
  readonly method: ApiMethod
  readonly path: string
  /** The audit log's name for it (`node.drain`); reads have one too, for logs. */
  readonly action: string
  readonly acts: boolean
  /**
   * The body is bytes, read by `run` as they arrive (any Content-Type, no
   * `--admin-max-body`: the route bounds it). Such a route is idempotent by
   * itself: `Idempotency-Key` is not looked at.
   */
  readonly rawBody?: boolean
  /** Checks the call (path, query, body) and says what the audit log records; throws a bad request. */
  check(call: ApiCall): AuditFacts
  run(call: ApiCall, deps: D): Promise<ApiAnswer>
}

interface Compiled<D> {
  readonly route: ApiRoute<D>
  readonly segments: readonly string[]
}

export interface RouteMatch<D> {
  readonly route: ApiRoute<D>
  readonly params: Record<string, string>
}

export interface Router<D> {
  /** The route for `method` `path`; throws 404 or 405 (with `details.allow`). */
  match(method: string, path: string): RouteMatch<D>
}

function matchSegments(segments: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (segments.length !== parts.length) return null
  const params: Record<string, string> = {}
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!
    if (s.startsWith(':')) params[s.slice(1)] = parts[i]!
    else if (s !== parts[i]) return null
  }
  return params
}

export function createRouter<D>(routes: readonly ApiRoute<D>[]): Router<D> {
  // Literal segments win over parameters (`/api/mail/queue` before `/api/mail/:id`): routes with fewer parameters first.
  const compiled: Compiled<D>[] = routes
    .map((route) => ({ route, segments: route.path.split('/').slice(1) }))
    .sort((a, b) => a.segments.filter((s) => s.startsWith(':')).length - b.segments.filter((s) => s.startsWith(':')).length)
  return {
    match(method, path) {
      const parts = path.split('/').slice(1)
      if (parts.at(-1) === '' && parts.length > 1) parts.pop()
      const allow = new Set<string>()
      for (const c of compiled) {
        const params = matchSegments(c.segments, parts)
        if (params === null) continue
        if (c.route.method === method) return { route: c.route, params }
        allow.add(c.route.method)
      }
      if (allow.size === 0) throw createError('ESPRA_ERR_HTTP_NOT_FOUND', { what: 'admin API route', path: path.slice(0, 200), hint: 'docs/admin-api.md lists them' })
      throw createError('ESPRA_ERR_HTTP_METHOD', { method, path: path.slice(0, 200), allowed: [...allow].join(', '), allow: [...allow] })
    },
  }
}
