/**
 * `espra-node admin token`: mints a Live capability token (lib/live/token.ts)
 * with the key derived from the cluster secret, found like every admin
 * command's (flags, ESPRA_*, the state directory `up` wrote). Prints the token
 * alone on stdout.
 */
import { parseDuration } from '../../core/config-parsers.js'
import { createError } from '../../core/errors.js'
import { deriveTokenKey, mintToken, type MintOptions } from '../../live/token.js'
import { resolveTarget, type ConnectOptions } from './cli.js'

export interface TokenOptions extends ConnectOptions {
  sub?: string[]
  pub?: string[]
  presence?: string[]
  ttl?: string
  user?: string
  info?: string
}

const list = (values: string[] | undefined): string[] => (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)

/** A Live capability token signed with the key derived from the cluster secret. */
export function mintLiveToken(secret: string, mint: MintOptions): { token: string } {
  return { token: mintToken(deriveTokenKey(secret), mint) }
}

export function adminToken(opts: TokenOptions): void {
  const { secret } = resolveTarget(opts)
  let ttlMs: number
  try {
    ttlMs = parseDuration(opts.ttl ?? '1h')
  } catch (reason) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--ttl', reason: String(reason) })
  }
  let info: Record<string, unknown> | undefined
  if (opts.info !== undefined) {
    try {
      info = JSON.parse(opts.info) as Record<string, unknown>
    } catch {
      info = undefined
    }
    if (typeof info !== 'object' || info === null || Array.isArray(info)) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--info', reason: 'must be a JSON object' })
  }
  const { token } = mintLiveToken(secret, {
    sub: list(opts.sub), pub: list(opts.pub), presence: list(opts.presence), ttlMs,
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(info !== undefined ? { info } : {}),
  })
  process.stdout.write(`${token}\n`)
}
