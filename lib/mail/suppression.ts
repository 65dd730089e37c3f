/**
 * Suppressed recipients: an address that hard-bounced (a 5xx for it) is kept
 * in the datastore (kind `mailSuppression`, key the lower-case address) until
 * `until`; mail to it fails at once with a `suppressed` event instead of
 * being sent. Cluster-wide: every mail node reads the same records. An
 * expired record reads as absent (and is removed when next read).
 */
import type { Datastore, DatastoreValue } from '../storage/datastore.js'
import { listAll } from '../storage/datastore.js'

export interface Suppression {
  readonly address: string
  readonly reason: string
  readonly at: number
  readonly until: number
  /** The message whose bounce suppressed it, or `admin` when added by hand. */
  readonly message: string
}

const keyOf = (address: string): string => address.toLowerCase()

export async function getSuppression(datastore: Datastore, address: string, now = Date.now()): Promise<Suppression | null> {
  const v = (await datastore.get('mailSuppression', keyOf(address))) as unknown as Suppression | null
  if (v === null) return null
  if (v.until <= now) {
    await datastore.delete('mailSuppression', keyOf(address))
    return null
  }
  return v
}

export async function isSuppressed(datastore: Datastore, address: string): Promise<boolean> {
  return (await getSuppression(datastore, address)) !== null
}

export async function suppress(datastore: Datastore, address: string, o: { reason: string; message: string; ttlMs: number }): Promise<Suppression> {
  const at = Date.now()
  const s: Suppression = { address: address.toLowerCase(), reason: o.reason.slice(0, 500), at, until: at + o.ttlMs, message: o.message }
  await datastore.put('mailSuppression', keyOf(address), s as unknown as DatastoreValue)
  return s
}

export async function unsuppress(datastore: Datastore, address: string): Promise<boolean> {
  return datastore.delete('mailSuppression', keyOf(address))
}

/** Every suppression still in force, in address order. */
export async function listSuppressions(datastore: Datastore, now = Date.now()): Promise<Suppression[]> {
  const out: Suppression[] = []
  for await (const e of listAll(datastore, 'mailSuppression')) {
    const s = e.value as unknown as Suppression
    if (s.until > now) out.push(s)
  }
  return out
}
