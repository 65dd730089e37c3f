/**
 * `espra-node admin upload-token`: mints a single-use upload token
 * (lib/uploads/token.ts) and records its id in the seed's datastore over the
 * meta port. Prints the token alone on stdout.
 */
import { parseDuration, parseSize } from '../../core/config-parsers.js'
import { createError } from '../../core/errors.js'
import { createDatastoreClient } from '../../storage/datastore-client.js'
import type { Datastore } from '../../storage/datastore.js'
import { deriveUploadKey, mintUploadToken, type UploadMintOptions } from '../../uploads/token.js'
import { connect, resolveTarget, type ConnectOptions } from './cli.js'

export interface UploadTokenOptions extends ConnectOptions {
  maxSize?: string
  types?: string[]
  ttl?: string
  owner?: string
  channel?: string
  inline?: boolean
}

function parsed<T>(option: string, parse: (raw: string) => T, raw: string): T {
  try {
    return parse(raw)
  } catch (reason) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: String(reason) })
  }
}

/** A single-use upload token, its id recorded in the datastore so a fileserver can consume it once. */
export async function mintUpload(secret: string, datastore: Pick<Datastore, 'put'>, mint: UploadMintOptions): Promise<{ token: string }> {
  return { token: await mintUploadToken(deriveUploadKey(secret), datastore, mint) }
}

export async function adminUploadToken(opts: UploadTokenOptions): Promise<void> {
  const { secret } = resolveTarget(opts)
  const mint = {
    maxSize: parsed('--max-size', parseSize, opts.maxSize ?? '10MB'),
    types: (opts.types ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean),
    ttlMs: parsed('--ttl', parseDuration, opts.ttl ?? '1h'),
    ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
    ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
    ...(opts.inline === true ? { inline: true } : {}),
  }
  const client = await connect(opts)
  try {
    const { token } = await mintUpload(secret, createDatastoreClient(client), mint)
    process.stdout.write(`${token}\n`)
  } finally {
    await client.close()
  }
}
