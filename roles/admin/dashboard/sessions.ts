/**
 * Dashboard sessions: a login with an operator's token makes a session whose
 * random id (32 bytes, base64url) goes to the browser in an `HttpOnly`,
 * `SameSite=Strict` cookie. The datastore keeps only the id's sha256 (kind
 * `adminSessions`), so whoever reads the datastore holds no usable cookie,
 * and every child and every admin node sees the same sessions: logging out
 * in one ends the session everywhere at once.
 *
 * A session carries the operator's name, not their role: each call looks the
 * operator up in this node's `--admin-tokens-file` again, so an operator
 * removed from the file (and the node restarted) is logged out. Each session
 * has its own CSRF token, sent back by the dashboard in `X-CSRF-Token` on
 * every call that changes state (roles/admin/dashboard/csrf.ts).
 *
 * Every login makes a new id (a cookie planted before login is never
 * promoted: no session fixation) and deletes the session the browser had.
 * Sessions end {@link SESSION_TTL_MS} after login, whatever the activity.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { AdminOperator, AdminRole } from '../../../lib/core/options-admin.js'
import type { Datastore, DatastoreValue } from '../../../lib/storage/datastore.js'

export const SESSION_TTL_MS = 12 * 3600_000
const PREFIX = 's/'
/** What a session id looks like on the wire: anything else is not looked up. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/

export interface Session {
  /** sha256 of the id, hex: the datastore key. */
  readonly key: string
  readonly operator: string
  readonly role: AdminRole
  readonly csrf: string
  readonly createdAt: number
  readonly expiresAt: number
  readonly address: string
}

export interface SessionStore {
  /** A new session for `operator`; resolves it and the id for the cookie. */
  create(operator: AdminOperator, address: string, now?: number): Promise<{ id: string; session: Session }>
  /** The live session of a cookie's id; null when malformed, unknown, expired (and then deleted) or its operator is gone. */
  find(id: string, now?: number): Promise<{ session: Session; operator: AdminOperator } | null>
  /** Ends a session (logout, or a new login over it); true when there was one. */
  end(id: string): Promise<boolean>
  /** Deletes sessions past their end; resolves how many. */
  sweep(now?: number): Promise<number>
}

const keyOf = (id: string): string => createHash('sha256').update(id).digest('hex')

export function createSessionStore(datastore: Datastore, operators: readonly AdminOperator[]): SessionStore {
  const byName = new Map(operators.map((o) => [o.name, o]))
  return {
    async create(operator, address, now = Date.now()) {
      const id = randomBytes(32).toString('base64url')
      const session: Session = {
        key: keyOf(id), operator: operator.name, role: operator.role, csrf: randomBytes(24).toString('base64url'),
        createdAt: now, expiresAt: now + SESSION_TTL_MS, address,
      }
      await datastore.put('adminSessions', PREFIX + session.key, session as unknown as DatastoreValue)
      return { id, session }
    },
    async find(id, now = Date.now()) {
      if (!SESSION_ID.test(id)) return null
      const key = PREFIX + keyOf(id)
      const session = (await datastore.get('adminSessions', key)) as unknown as Session | null
      if (session === null) return null
      if (session.expiresAt <= now) {
        await datastore.delete('adminSessions', key).catch(() => false)
        return null
      }
      const operator = byName.get(session.operator)
      // Gone from the tokens file, or its role changed: the session no longer speaks for anyone.
      if (operator === undefined || operator.role !== session.role) return null
      return { session, operator }
    },
    async end(id) {
      if (!SESSION_ID.test(id)) return false
      return datastore.delete('adminSessions', PREFIX + keyOf(id))
    },
    async sweep(now = Date.now()) {
      let removed = 0
      let after: string | undefined
      for (;;) {
        const page = await datastore.list('adminSessions', { prefix: PREFIX, limit: 1000, ...(after !== undefined ? { after } : {}) })
        for (const e of page.entries) {
          if ((e.value as unknown as Session).expiresAt <= now && (await datastore.delete('adminSessions', e.key))) removed++
        }
        if (page.next === null || page.entries.length === 0) return removed
        after = page.next
      }
    },
  }
}

/** The cookie's name: `__Host-` (the browser then insists on Secure, path `/` and no Domain) when served over TLS. */
export const cookieName = (secure: boolean): string => (secure ? '__Host-espra_session' : 'espra_session')

/** The session id from a `Cookie` header (either name), or null. */
export function sessionIdFrom(cookieHeader: string): string | null {
  if (cookieHeader === '' || cookieHeader.length > 8192) return null
  for (const part of cookieHeader.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    const name = part.slice(0, eq).trim()
    if (name === '__Host-espra_session' || name === 'espra_session') return part.slice(eq + 1).trim()
  }
  return null
}

export function sessionCookie(id: string, secure: boolean, maxAgeMs: number = SESSION_TTL_MS): string {
  const attrs = [`${cookieName(secure)}=${id}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${Math.floor(maxAgeMs / 1000)}`]
  if (secure) attrs.push('Secure')
  return attrs.join('; ')
}

/** Tells the browser to forget the cookie. */
export const clearedCookie = (secure: boolean): string => sessionCookie('', secure, 0)
