/** The operator ops (drain, maintenance, node control) answer admin peers only. */
import { EspraError } from '../lib/core/errors.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'

export function adminOnly(peer: MetaPeer, op: string): void {
  if (peer.kind !== 'admin') throw new EspraError('ESPRA_ERR_META_FORBIDDEN', `${op} is for admin peers only (this connection authenticated as a ${peer.kind ?? 'unknown'} peer)`, { op })
}
