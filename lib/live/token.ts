/**
 * Capability tokens for Live clients (docs/live-protocol.md, "Tokens").
 * `base64url(JSON claims) "." base64url(HMAC-SHA256(key, payload))` where
 * `key = HMAC-SHA256(clusterSecret, "espra-live-token-v1")`: application code
 * mints them with the cluster secret, Live nodes verify them, and the secret
 * itself never appears in a token.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createError } from '../core/errors.js'
import { compilePatterns, isChannelPattern } from './channel.js'

const KEY_LABEL = 'espra-live-token-v1'
/** Longest token accepted, in characters (a token travels in URLs). */
export const MAX_TOKEN_LENGTH = 4096

export type LiveAction = 'sub' | 'pub' | 'presence'
export const LIVE_ACTIONS: readonly LiveAction[] = ['sub', 'pub', 'presence']

/** What a token says. `exp` is seconds since the epoch; `user` makes the holder a presence member. */
export interface TokenClaims {
  readonly v: 1
  readonly sub: readonly string[]
  readonly pub: readonly string[]
  readonly presence: readonly string[]
  readonly exp: number
  readonly user?: string
  readonly info?: Record<string, unknown>
}

export interface MintOptions {
  sub?: readonly string[]
  pub?: readonly string[]
  presence?: readonly string[]
  /** Lifetime in ms. */
  ttlMs: number
  user?: string
  info?: Record<string, unknown>
  /** Clock for tests (ms since the epoch). */
  now?: number
}

/**
 * Derives a token key from the cluster secret; do it once. Other signed
 * tokens (upload tokens) pass their own label, so one kind never verifies as
 * another.
 */
export function deriveTokenKey(secret: string, label = KEY_LABEL): Buffer {
  return createHmac('sha256', secret).update(label).digest()
}

function sign(key: Buffer, payload: string): string {
  return createHmac('sha256', key).update(payload).digest('base64url')
}

/** `base64url(JSON claims) "." signature`: the token format every signed token here shares. */
export function signClaims(key: Buffer, claims: object): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  return `${payload}.${sign(key, payload)}`
}

/** Checks a token's signature and decodes its claims (shape and expiry are the caller's). Never throws. */
export function openSignedClaims(key: Buffer, token: string): { ok: true; claims: unknown } | { ok: false; reason: 'malformed' | 'forged' } {
  if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'malformed' }
  const dot = token.indexOf('.')
  if (dot <= 0) return { ok: false, reason: 'malformed' }
  const payload = token.slice(0, dot)
  const given = Buffer.from(token.slice(dot + 1), 'base64url')
  const expected = createHmac('sha256', key).update(payload).digest()
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'forged' }
  try {
    return { ok: true, claims: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

/** Mints a token; throws `ESPRA_ERR_CONFIG_INVALID` on a bad pattern, user or lifetime. */
export function mintToken(key: Buffer, opts: MintOptions): string {
  const lists = { sub: [...(opts.sub ?? [])], pub: [...(opts.pub ?? [])], presence: [...(opts.presence ?? [])] }
  for (const [action, list] of Object.entries(lists)) {
    for (const p of list) if (!isChannelPattern(p)) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: `--${action}`, reason: `'${p}' is not a channel pattern (letters, digits, _ - : . @ and *, at most 128)` })
  }
  if (!(opts.ttlMs > 0)) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--ttl', reason: 'must be more than 0' })
  if (opts.user !== undefined && (opts.user.length === 0 || opts.user.length > 128)) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--user', reason: 'must be 1 to 128 characters' })
  const claims: TokenClaims = {
    v: 1, ...lists, exp: Math.floor(((opts.now ?? Date.now()) + opts.ttlMs) / 1000),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.info !== undefined ? { info: opts.info } : {}),
  }
  const token = signClaims(key, claims)
  if (token.length > MAX_TOKEN_LENGTH) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--info', reason: `the token would be ${token.length} characters (limit ${MAX_TOKEN_LENGTH}): shorten --info or the patterns` })
  return token
}

export type VerifyResult = { ok: true; claims: TokenClaims } | { ok: false; reason: 'malformed' | 'forged' | 'expired' }

/** Checks signature, shape and expiry. Never throws. */
export function verifyToken(key: Buffer, token: string, now = Date.now()): VerifyResult {
  const opened = openSignedClaims(key, token)
  if (!opened.ok) return opened
  const claims = opened.claims as TokenClaims
  const lists = [claims?.sub, claims?.pub, claims?.presence]
  if (claims?.v !== 1 || typeof claims.exp !== 'number' || !lists.every((l) => Array.isArray(l) && l.every(isChannelPattern))) return { ok: false, reason: 'malformed' }
  if (claims.exp * 1000 <= now) return { ok: false, reason: 'expired' }
  return { ok: true, claims }
}

/** A verified token compiled for fast checks. */
export interface Grant {
  readonly claims: TokenClaims
  can(action: LiveAction, channel: string): boolean
  expired(now?: number): boolean
}

export function compileGrant(claims: TokenClaims): Grant {
  const matchers = { sub: compilePatterns(claims.sub), pub: compilePatterns(claims.pub), presence: compilePatterns(claims.presence) }
  return {
    claims,
    can: (action, channel) => matchers[action](channel),
    expired: (now = Date.now()) => claims.exp * 1000 <= now,
  }
}
