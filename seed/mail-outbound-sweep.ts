/**
 * The outbound mail sweep (docs/mail.md, "Outbound", "Retention"): removes
 * outbound messages that are finished (every recipient domain done:
 * `delivered` or `failed`, or `dropped` by an operator) once their last event
 * is `--mail-outbound-retention` old, with their raw bytes (`raw/<id>` or
 * their blob), and suppressions past their `until`. Held, queued and deferred
 * messages stay. Run by the leading seed with the inbound sweep, one page of
 * each per pass, each from a cursor that goes round the key space.
 *
 * The raw bytes go before the record: a pass cut short leaves a record the
 * next pass finds again. An expired suppression is taken with `consume` and
 * put back when it turns out to be in force (added again meanwhile).
 */
import type { Logger } from '../lib/core/log.js'
import { outStatus, rawKey, type OutRecord } from '../lib/mail/outbound-store.js'
import type { Suppression } from '../lib/mail/suppression.js'
import type { BlobStore } from '../lib/storage/blob-store.js'
import type { Datastore, DatastoreValue } from '../lib/storage/datastore.js'
import { SWEEP_PAGE } from './mail-inbound-sweep.js'

const REMOVE_AT_ONCE = 32
const FINISHED = new Set(['delivered', 'failed', 'dropped'])

export interface OutboundSweepOptions {
  readonly datastore: Datastore
  readonly blobs: Pick<BlobStore, 'delete'>
  readonly retentionMs: number
  readonly log: Logger
  readonly now?: () => number
}

export interface OutboundSweepCounts {
  delivered: number
  failed: number
  dropped: number
  /** Suppressions past their `until`. */
  suppression: number
}

export interface OutboundSweep {
  pass(): Promise<OutboundSweepCounts>
  readonly totals: Readonly<OutboundSweepCounts>
}

/** When a finished message last changed: its newest event (the record's own time without one). */
const lastChange = (r: OutRecord): number => r.events.reduce((t, e) => Math.max(t, e.at), r.at)

export function createOutboundSweep(opts: OutboundSweepOptions): OutboundSweep {
  const { datastore, log } = opts
  const now = opts.now ?? Date.now
  const totals: OutboundSweepCounts = { delivered: 0, failed: 0, dropped: 0, suppression: 0 }
  let recordsAfter: string | undefined
  let suppressionsAfter: string | undefined

  async function remove(r: OutRecord): Promise<void> {
    await (r.raw.store === 'ds' ? datastore.delete('mailOutbound', rawKey(r.id)) : opts.blobs.delete(r.raw.key))
    await datastore.delete('mailOutbound', `out/${r.id}`)
  }

  async function sweepRecords(t: number): Promise<Omit<OutboundSweepCounts, 'suppression'>> {
    const page = await datastore.list('mailOutbound', { prefix: 'out/', limit: SWEEP_PAGE, ...(recordsAfter === undefined ? {} : { after: recordsAfter }) })
    recordsAfter = page.next ?? undefined
    const counts = { delivered: 0, failed: 0, dropped: 0 }
    const doomed: OutRecord[] = []
    for (const { value } of page.entries) {
      const r = value as unknown as OutRecord
      const status = outStatus(r)
      if (!FINISHED.has(status) || t - lastChange(r) < opts.retentionMs) continue
      counts[status as keyof typeof counts]++
      doomed.push(r)
    }
    for (let i = 0; i < doomed.length; i += REMOVE_AT_ONCE) await Promise.all(doomed.slice(i, i + REMOVE_AT_ONCE).map(remove))
    return counts
  }

  async function sweepSuppressions(t: number): Promise<number> {
    const page = await datastore.list('mailSuppression', { limit: SWEEP_PAGE, ...(suppressionsAfter === undefined ? {} : { after: suppressionsAfter }) })
    suppressionsAfter = page.next ?? undefined
    let removed = 0
    await Promise.all(page.entries.filter((e) => (e.value as unknown as Suppression).until <= t).map(async ({ key }) => {
      const taken = (await datastore.consume('mailSuppression', key)) as unknown as Suppression | null
      if (taken === null) return
      if (taken.until > t) await datastore.putIf('mailSuppression', key, taken as unknown as DatastoreValue, null)
      else removed++
    }))
    return removed
  }

  return {
    totals,
    async pass() {
      const t = now()
      const counts = { ...(await sweepRecords(t)), suppression: await sweepSuppressions(t) }
      for (const k of Object.keys(counts) as (keyof OutboundSweepCounts)[]) totals[k] += counts[k]
      const messages = counts.delivered + counts.failed + counts.dropped
      if (messages + counts.suppression > 0) log.info(counts, `outbound mail swept: ${messages} finished messages removed, ${counts.suppression} expired suppressions`)
      return counts
    },
  }
}
