/**
 * What a browser says about where a request comes from, and the rule every
 * state-changing call made with the session cookie must pass (bearer-token
 * calls are not browser calls and skip it):
 *
 * 1. `Sec-Fetch-Site`, when sent (every current browser does), must be
 *    `same-origin`;
 * 2. `Origin`, when sent, must be this node's own origin (its scheme and the
 *    `Host` the request came to);
 * 3. `X-CSRF-Token` must equal the session's CSRF token (compared in
 *    constant time). A page on another origin can neither read the token nor
 *    send a custom header without a CORS preflight, which this node never
 *    grants.
 *
 * The login itself has no session yet: rules 1 and 2 apply (a login forced
 * from another site, "login CSRF", is refused).
 */
import { timingSafeEqual } from 'node:crypto'
import { decoder } from './text.js'
import { createError } from '../../../lib/core/errors.js'
import { plainAddress, type TrustedProxies } from '../../../lib/core/client-address.js'
import type { HttpRequest, HttpResponse } from '../../../lib/http/uws.js'

export interface BrowserFacts {
  readonly cookie: string
  readonly origin: string
  readonly fetchSite: string
  readonly host: string
  readonly csrfToken: string
  /** Served over TLS: a trusted proxy in front said `X-Forwarded-Proto: https` (the node has no TLS of its own). */
  readonly secure: boolean
}

/** Reads the headers (inside the handler's own call, as uWS requires). */
export function readBrowserFacts(res: HttpResponse, req: HttpRequest, trusted: TrustedProxies): BrowserFacts {
  const peer = plainAddress(decoder.decode(res.getRemoteAddressAsText()))
  return {
    cookie: req.getHeader('cookie'),
    origin: req.getHeader('origin'),
    fetchSite: req.getHeader('sec-fetch-site'),
    host: req.getHeader('host'),
    csrfToken: req.getHeader('x-csrf-token'),
    secure: trusted.has(peer) && req.getHeader('x-forwarded-proto').trim().toLowerCase() === 'https',
  }
}

/** Rules 1 and 2: throws 403 `ESPRA_ERR_ADMIN_CSRF` for a request another origin made. */
export function checkSameOrigin(facts: BrowserFacts): void {
  if (facts.fetchSite !== '' && facts.fetchSite !== 'same-origin') {
    throw createError('ESPRA_ERR_ADMIN_CSRF', { reason: `the browser says this request came from another site (Sec-Fetch-Site: ${facts.fetchSite.slice(0, 32)})` })
  }
  if (facts.origin !== '') {
    const own = `${facts.secure ? 'https' : 'http'}://${facts.host}`
    if (facts.origin !== own) throw createError('ESPRA_ERR_ADMIN_CSRF', { reason: `a request from origin ${facts.origin.slice(0, 200)}, not this node's ${own.slice(0, 200)}` })
  }
}

/** All three rules, for a cookie call that changes state. */
export function checkCsrf(facts: BrowserFacts, sessionCsrf: string): void {
  checkSameOrigin(facts)
  const given = Buffer.from(facts.csrfToken)
  const want = Buffer.from(sessionCsrf)
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw createError('ESPRA_ERR_ADMIN_CSRF', { reason: facts.csrfToken === '' ? 'a dashboard call that changes state must send X-CSRF-Token (GET /dashboard/session gives it)' : 'X-CSRF-Token is not this session\'s' })
  }
}
