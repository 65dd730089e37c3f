/**
 * `files.changed`: a node tells the seed that blob-store keys now exist or
 * were replaced (an upload finished), and the seed pushes the same body to
 * every peer that subscribed with `{files: true}` (fileservers). Fileservers
 * drop what they remembered about those keys: the negative cache ("no such
 * key") and any cached copy. See docs/meta-protocol.md.
 *
 * It is a request, not a one-way message, so the caller learns the seed got
 * it (and a seed too old to know the op answers ESPRA_ERR_META_UNKNOWN_OP
 * instead of dropping the connection).
 */
import { createError } from '../core/errors.js'

/** At most this many keys per notification (keeps the push far under --max-frame). */
export const MAX_CHANGED_KEYS = 256

/** Anything that can send a meta request to the seed: a MetaClient, a node parent's seed link. */
export interface FileChangeLink {
  request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R>
}

export interface FilesChanged {
  readonly keys: readonly string[]
  /**
   * Pushed by the seed (never sent to it) on every `{files: true}`
   * subscription, i.e. on every (re)connect: notifications may have been
   * missed while disconnected, so forget every remembered miss.
   */
  readonly all?: true
}

/** The push a fresh subscriber gets first. */
export const FILES_CHANGED_ALL: FilesChanged = Object.freeze({ keys: [], all: true })

/** A push body: a list of keys, or the all-keys form a fresh subscription gets. */
export function parseFilesChangedPush(body: unknown): FilesChanged {
  if ((body as { all?: unknown } | null)?.all === true) return FILES_CHANGED_ALL
  return parseFilesChanged(body)
}

/** The body's keys, or throws ESPRA_ERR_META_BAD_REQUEST. Keys are only checked for shape here; receivers check them as storage keys. */
export function parseFilesChanged(body: unknown): FilesChanged {
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_CHANGED_KEYS) {
    throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'keys', reason: `must be a list of 1 to ${MAX_CHANGED_KEYS} strings` })
  }
  for (const k of keys) {
    if (typeof k !== 'string' || k.length === 0 || k.length > 1024) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'keys', reason: 'must be strings of 1 to 1024 characters' })
  }
  return { keys: keys as string[] }
}

/**
 * Tells every fileserver (through the seed) that `key` (or each of `keys`)
 * now exists or changed. Call it once an upload is durable in the blob
 * store. Resolves with how many subscribers the seed pushed it to.
 */
export async function notifyFileChanged(link: FileChangeLink, key: string | readonly string[], timeoutMs = 5000): Promise<{ subscribers: number }> {
  const body = parseFilesChanged({ keys: typeof key === 'string' ? [key] : [...key] })
  return link.request<{ subscribers: number }>('files.changed', body, timeoutMs)
}
