/**
 * Upload tokens: what lets a client `POST /upload` to a fileserver once.
 * Same format and signing as Live tokens (lib/live/token.ts) under their own
 * key label, so a Live token never passes as an upload token. Each token has
 * an id recorded in the datastore (`uploadTokens` kind) when it is minted;
 * the fileserver `consume`s that record when an upload starts, atomically, so
 * a token is used at most once even when two uploads race.
 *
 * Application code mints with {@link mintUploadToken} (the cluster secret
 * and a datastore: the seed's embedded one, or a client over the meta port);
 * operators with `espra-node admin upload-token`.
 */
import { randomBytes } from 'node:crypto'
import { createError } from '../core/errors.js'
import { isChannel } from '../live/channel.js'
import { deriveTokenKey, MAX_TOKEN_LENGTH, openSignedClaims, signClaims } from '../live/token.js'
import type { Datastore } from '../storage/datastore.js'

const KEY_LABEL = 'espra-upload-token-v1'
/** Largest `maxSize` a token may carry (also the fileserver's hard limit). */
export const MAX_UPLOAD_SIZE = 64 * 1024 ** 3
const TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})$/

/** What an upload token says. `exp` is seconds since the epoch. */
export interface UploadClaims {
  readonly v: 1
  /** Id of its `uploadTokens` record. */
  readonly id: string
  /** Largest body accepted, in bytes. */
  readonly maxSize: number
  /** Media types accepted (`type/subtype` or `type/*`); empty: any. */
  readonly types: readonly string[]
  readonly exp: number
  readonly owner?: string
  /** Live channel that hears progress events. */
  readonly channel?: string
  /**
   * The file may be shown inline even when its type is active (HTML, SVG,
   * PDF, ...): served with `Content-Disposition: inline` instead of
   * `attachment`. It stays sandboxed (CSP) and nosniff either way.
   */
  readonly inline?: true
}

export interface UploadMintOptions {
  maxSize: number
  types?: readonly string[]
  /** Lifetime in ms. */
  ttlMs: number
  owner?: string
  channel?: string
  /** Let an active type (HTML, SVG, ...) be shown inline rather than downloaded; see {@link UploadClaims.inline}. */
  inline?: boolean
  /** Clock for tests (ms since the epoch). */
  now?: number
}

/** Derives the upload-token key from the cluster secret; do it once. */
export function deriveUploadKey(secret: string): Buffer {
  return deriveTokenKey(secret, KEY_LABEL)
}

/** Throws `ESPRA_ERR_CONFIG_INVALID` naming the first bad option. */
function checkMint(opts: UploadMintOptions): void {
  const bad = (option: string, reason: string) => createError('ESPRA_ERR_CONFIG_INVALID', { option: `--${option}`, reason })
  if (!(Number.isInteger(opts.maxSize) && opts.maxSize > 0 && opts.maxSize <= MAX_UPLOAD_SIZE)) throw bad('max-size', `must be from 1 byte to ${MAX_UPLOAD_SIZE / 1024 ** 3}GB`)
  for (const t of opts.types ?? []) if (!TYPE.test(t.toLowerCase())) throw bad('types', `'${t}' is not a media type such as image/png or image/*`)
  if (!(opts.ttlMs > 0)) throw bad('ttl', 'must be more than 0')
  if (opts.owner !== undefined && (opts.owner.length === 0 || opts.owner.length > 128)) throw bad('owner', 'must be 1 to 128 characters')
  if (opts.channel !== undefined && !isChannel(opts.channel)) throw bad('channel', `'${opts.channel}' is not a channel name`)
  if (opts.inline !== undefined && typeof opts.inline !== 'boolean') throw bad('inline', 'must be true or false')
}

/**
 * Mints a token and records its id in `store` (durable before this
 * resolves). Throws `ESPRA_ERR_CONFIG_INVALID` on a bad option.
 */
export async function mintUploadToken(key: Buffer, store: Pick<Datastore, 'put'>, opts: UploadMintOptions): Promise<string> {
  checkMint(opts)
  const now = opts.now ?? Date.now()
  const claims: UploadClaims = {
    v: 1, id: randomBytes(16).toString('base64url'), maxSize: opts.maxSize, types: [...(opts.types ?? [])].map((t) => t.toLowerCase()),
    exp: Math.floor((now + opts.ttlMs) / 1000),
    ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
    ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
    ...(opts.inline === true ? { inline: true as const } : {}),
  }
  const token = signClaims(key, claims)
  if (token.length > MAX_TOKEN_LENGTH) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--types', reason: `the token would be ${token.length} characters (limit ${MAX_TOKEN_LENGTH}): name fewer types` })
  await store.put('uploadTokens', claims.id, { exp: claims.exp, mintedAt: now, ...(claims.owner !== undefined ? { owner: claims.owner } : {}) })
  return token
}

export type UploadVerifyResult = { ok: true; claims: UploadClaims } | { ok: false; reason: 'malformed' | 'forged' | 'expired' }

/** Checks signature, shape and expiry (not single use: that is the datastore's `consume`). Never throws. */
export function verifyUploadToken(key: Buffer, token: string, now = Date.now()): UploadVerifyResult {
  const opened = openSignedClaims(key, token)
  if (!opened.ok) return opened
  const c = opened.claims as Partial<UploadClaims> | null
  const shaped = typeof c === 'object' && c !== null && c.v === 1 && typeof c.id === 'string' && /^[A-Za-z0-9_-]{16,64}$/.test(c.id) &&
    typeof c.maxSize === 'number' && typeof c.exp === 'number' && Array.isArray(c.types) && c.types.every((t) => typeof t === 'string') &&
    (c.channel === undefined || isChannel(c.channel)) && (c.owner === undefined || typeof c.owner === 'string') && (c.inline === undefined || c.inline === true)
  if (!shaped) return { ok: false, reason: 'malformed' }
  if (c.exp! * 1000 <= now) return { ok: false, reason: 'expired' }
  return { ok: true, claims: c as UploadClaims }
}

/** Whether a token's type list allows `type` (parameters ignored; `image/*` matches every image). */
export function typeAllowed(claims: UploadClaims, type: string): boolean {
  if (claims.types.length === 0) return true
  const base = type.split(';')[0]!.trim().toLowerCase()
  return claims.types.some((t) => t === base || (t.endsWith('/*') && base.startsWith(t.slice(0, -1))))
}
