/**
 * Planned maintenance in a uWS child (fileservers, app nodes): wraps the
 * route methods of the child's app, so every route registered after it
 * answers the maintenance page first when maintenance applies (host, client
 * address, the node's clock: lib/http/maintenance.ts). Health checks
 * (`/_espra/health`) are registered before any role route and are never
 * wrapped, so load balancers keep seeing the node as it is.
 *
 * While no maintenance is set, a request costs one state read and one null
 * check. The client address (needed only with an allow list) is worked out
 * as every role does: the peer, or X-Forwarded-For walked past
 * `--trusted-proxies` (lib/core/client-address.ts).
 */
import { createTrustedProxies, forwardedClient, plainAddress } from '../core/client-address.js'
import type { MaintenanceState } from '../core/node-state.js'
import { HEALTH_PATH } from './health.js'
import { createMaintenanceCache, wantsJson, type Maintenance } from './maintenance.js'
import { statusLine } from './server.js'
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js'

type Handler = (res: HttpResponse, req: HttpRequest) => void | Promise<void>
const ROUTE_METHODS = ['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any'] as const
const decoder = new TextDecoder()

export interface MaintenanceGuardOptions {
  /** The node's current maintenance state (NodeState.maintenance), read per request. */
  maintenance(): MaintenanceState | null | undefined
  /** --trusted-proxies */
  readonly trustedProxies: readonly string[]
}

/** Writes the maintenance answer; call synchronously in the handler. */
function answer(res: HttpResponse, req: HttpRequest, m: Maintenance, now: number): void {
  const body = wantsJson(req.getHeader('accept')) ? m.json : m.html
  const head = req.getMethod() === 'head'
  res.cork(() => {
    res.writeStatus(statusLine(503))
      .writeHeader('Content-Type', body.contentType)
      .writeHeader('Cache-Control', 'no-store')
      .writeHeader('Retry-After', String(m.retryAfter(now)))
    // A request body is not read: the connection closes after the answer rather than parse it as the next request.
    if (head) res.endWithoutBody(body.bytes.length)
    else res.end(body.bytes, req.getHeader('content-length') !== '' || req.getHeader('transfer-encoding') !== '')
  })
}

/** Wraps `app`'s route methods; call it before the role adds its routes. */
export function guardMaintenance(app: TemplatedApp, opts: MaintenanceGuardOptions): void {
  const compiled = createMaintenanceCache()
  const trusted = createTrustedProxies(opts.trustedProxies)
  for (const method of ROUTE_METHODS) {
    const register = (app[method] as (pattern: string, handler: Handler) => TemplatedApp).bind(app)
    ;(app as unknown as Record<string, unknown>)[method] = (pattern: string, handler: Handler) => register(pattern, (res, req) => {
      const state = opts.maintenance()
      if (state != null) {
        const m = compiled(state)!
        const now = Date.now()
        // The allow list needs the client; without one any address will do.
        const client = m.state.allow.length === 0 ? '' :
          forwardedClient(plainAddress(decoder.decode(res.getRemoteAddressAsText())), req.getHeader('x-forwarded-for') || undefined, trusted)
        if (m.applies(req.getHeader('host'), client, now) && req.getUrl() !== HEALTH_PATH) return answer(res, req, m, now)
      }
      return handler(res, req)
    })
  }
}
