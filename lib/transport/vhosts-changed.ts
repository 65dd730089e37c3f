/**
 * `vhosts.changed`: the seed's push to every peer that subscribed with
 * `{vhosts: true}` (fileservers) after it changed a vhost mapping
 * (`vhost.set`, `vhost.rm`), so they drop what they cached about it. The seed
 * is the only writer of mappings, so it is the one place that pushes. See
 * docs/meta-protocol.md.
 */
import { createError } from '../core/errors.js'

export type VhostsChanged =
  /** Mappings of `host` changed: `paths` (null: every path of the host); `registered`: whether the host still has any. */
  | { readonly host: string; readonly paths: readonly string[] | null; readonly registered: boolean }
  /**
   * Pushed on every `{vhosts: true}` subscription, i.e. on every (re)connect:
   * changes may have been missed while disconnected, so forget every cached
   * mapping and reload the set of vhosts.
   */
  | { readonly all: true }

export const VHOSTS_CHANGED_ALL: VhostsChanged = Object.freeze({ all: true })

const bad = (reason: string) => createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'body', reason: `of vhosts.changed ${reason}` })

/** The push body, or throws ESPRA_ERR_META_BAD_REQUEST. Host and paths are checked for shape only; receivers use them as cache keys. */
export function parseVhostsChanged(body: unknown): VhostsChanged {
  const b = body as Record<string, unknown> | null
  if (typeof b !== 'object' || b === null) throw bad('must be a map')
  if (b['all'] === true) return VHOSTS_CHANGED_ALL
  const { host, paths, registered } = b
  if (typeof host !== 'string' || host === '') throw bad('needs a host')
  if (typeof registered !== 'boolean') throw bad('needs registered (a boolean)')
  if (paths !== null && !(Array.isArray(paths) && paths.every((p) => typeof p === 'string'))) throw bad('needs paths: null or a list of strings')
  return { host, paths: paths as string[] | null, registered }
}
