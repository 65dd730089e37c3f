/** The operator ops (drain, maintenance, node control) answer admin peers only. */
import { createError } from '../lib/core/errors.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'

export function adminOnly(peer: MetaPeer, op: string): void {
  if (peer.kind !== 'admin') throw createError('ESPRA_ERR_META_FORBIDDEN', { op, kind: peer.kind ?? 'unknown' })
}
