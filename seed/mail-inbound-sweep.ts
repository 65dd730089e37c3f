/**
 * The inbound mail sweep (docs/mail.md, "Retention"): removes inbound
 * messages whose handoff is over, so the seed's datastore does not grow with
 * every message ever taken. Run by the leading seed only, a bounded pass at a
 * time (seed/seed.ts).
 *
 * A message goes, with its raw bytes (`raw/<id>` or its blob), its dedupe
 * record and last its record `in/<id>`, when
 * - it was handed to `handleMail` (`handledAt`) at least
 *   `--mail-inbound-retention` ago, or
 * - its handoff is an `espra.mail` dead letter that failed at least
 *   `--mail-inbound-failed-retention` ago,
 * and in both cases it arrived at least the dedupe window ago: a client's
 * retry within the window still finds the first message (its record and its
 * dedupe record) and is not handed twice. Pending and unqueued messages stay.
 *
 * Removal order: raw bytes, dedupe record, record, and for a failed message
 * last its dead letter. A pass cut short before the record leaves a record
 * the next pass finds again (each removal is idempotent). The dedupe record
 * is taken with `consume` and put back when it turns out to name a later
 * message (a resend after the window took the key over meanwhile).
 *
 * The dead letter is deleted with the queue's `deleteDead`, after the
 * record, never before: deleted while the record still names it, `admin mail
 * inbound` would list a message whose handoff is gone. It leaves `admin tasks
 * --dead` and the queue at once; no app node sees it. A pass cut short
 * between the two leaves the dead letter (nothing names it any more: `admin
 * tasks rm` deletes it; a retry of it by hand finds no record and is settled
 * done without running `handleMail`, roles/app/mail-handoff.ts).
 *
 * Each pass reads one page of records (at most {@link SWEEP_PAGE}) from a
 * cursor that goes round the key space, and one page of dedupe records
 * (those whose message is gone and whose window has passed: left by copies
 * that lost their key, or by records removed by hand). Attachments the app
 * node wrote (`mail/in/<day>/<id>/<n>`) are not removed: the app was handed
 * references to them and may keep them.
 */
import type { Logger } from '../lib/core/log.js'
import { dedupeKey, inboundRawKey, inboundRecordKey, MAIL_TASK_NAME } from '../lib/mail/inbound.js'
import type { InboundRecord } from '../lib/mail/inbound-record.js'
import type { BlobStore } from '../lib/storage/blob-store.js'
import type { Datastore } from '../lib/storage/datastore.js'
import type { TaskQueue } from '../lib/tasks/queue.js'

const KIND = 'mailInbound'
/** Records (and dedupe records) read per pass: one datastore page each. */
export const SWEEP_PAGE = 1000
/** Messages removed at once within a pass. */
const REMOVE_AT_ONCE = 32

/** How often the leader runs a pass: a quarter of the shorter retention, from 1 s to a minute (a message goes at most that long after its time). */
export function mailSweepInterval(retentionMs: number, failedRetentionMs: number): number {
  return Math.min(60_000, Math.max(1000, Math.floor(Math.min(retentionMs, failedRetentionMs) / 4)))
}

export interface InboundSweepOptions {
  readonly datastore: Datastore
  readonly tasks: Pick<TaskQueue, 'deadLetters' | 'deleteDead'>
  readonly blobs: Pick<BlobStore, 'delete'>
  readonly retentionMs: number
  readonly failedRetentionMs: number
  /** The dedupe window now (the seed's --mail-dedupe-window, or a longer one a mail node asked for). */
  readonly dedupeWindowMs: () => number
  readonly log: Logger
  readonly now?: () => number
}

export interface SweepCounts {
  /** Handled messages removed. */
  handled: number
  /** Failed (dead letter) messages removed. */
  failed: number
  /** Dedupe records removed without their message (theirs was already gone). */
  dedupe: number
}

export interface InboundSweep {
  /** One bounded pass; resolves with what it removed. */
  pass(): Promise<SweepCounts>
  /** Totals since the seed started (metrics). */
  readonly totals: Readonly<SweepCounts>
}

interface DedupeRecord {
  id: string
  at: number
}

export function createInboundSweep(opts: InboundSweepOptions): InboundSweep {
  const { datastore, log } = opts
  const now = opts.now ?? Date.now
  const totals: SweepCounts = { handled: 0, failed: 0, dedupe: 0 }
  let recordsAfter: string | undefined
  let dedupeAfter: string | undefined

  /** Dead `espra.mail` letters by task id → when they failed; read only when a pass has a candidate. */
  async function deadLetters(): Promise<Map<string, number>> {
    const dead = new Map<string, number>()
    let after: string | undefined
    do {
      const page = await opts.tasks.deadLetters({ limit: 1000, ...(after === undefined ? {} : { after }) })
      for (const t of page.tasks) if (t.name === MAIL_TASK_NAME) dead.set(t.id, t.failedAt)
      after = page.next ?? undefined
    } while (after !== undefined)
    return dead
  }

  /** Takes the dedupe record away when it names `id`; puts back one that names a later message. */
  async function dropDedupe(key: string, id: string): Promise<void> {
    const taken = (await datastore.consume(KIND, key)) as unknown as DedupeRecord | null
    if (taken !== null && taken.id !== id) await datastore.putIf(KIND, key, taken as unknown as Record<string, unknown>, null)
  }

  /** Removes a message; `deadLetter`: its handoff's dead letter, dropped once nothing names it. */
  async function remove(r: InboundRecord, deadLetter: string | null = null): Promise<void> {
    await (r.raw.store === 'ds' ? datastore.delete(KIND, inboundRawKey(r.id)) : opts.blobs.delete(r.raw.key))
    await dropDedupe(dedupeKey(r.messageId, r.raw.sha256, r.envelope.to), r.id)
    await datastore.delete(KIND, inboundRecordKey(r.id))
    // False when it is no dead letter any more (retried or deleted by hand meanwhile): a retried one's run finds no record.
    if (deadLetter !== null) await opts.tasks.deleteDead(deadLetter)
  }

  async function sweepRecords(t: number, windowMs: number): Promise<{ handled: number; failed: number }> {
    const page = await datastore.list(KIND, { prefix: 'in/', limit: SWEEP_PAGE, ...(recordsAfter === undefined ? {} : { after: recordsAfter }) })
    recordsAfter = page.next ?? undefined
    const old = page.entries.map((e) => e.value as unknown as InboundRecord).filter((r) => t - r.at >= windowMs)
    const handled = old.filter((r) => typeof r.handledAt === 'number' && t - r.handledAt >= opts.retentionMs)
    // A dead letter failed after the message arrived: only messages at least that old can be one past its retention.
    const candidates = old.filter((r) => typeof r.handledAt !== 'number' && r.task !== null && t - r.at >= opts.failedRetentionMs)
    const dead = candidates.length === 0 ? new Map<string, number>() : await deadLetters()
    const failed = candidates.filter((r) => {
      const failedAt = dead.get(r.task!)
      return failedAt !== undefined && t - failedAt >= opts.failedRetentionMs
    })
    const doomed: [InboundRecord, string | null][] = [...handled.map((r) => [r, null] as [InboundRecord, null]), ...failed.map((r) => [r, r.task] as [InboundRecord, string])]
    for (let i = 0; i < doomed.length; i += REMOVE_AT_ONCE) await Promise.all(doomed.slice(i, i + REMOVE_AT_ONCE).map(([r, dead]) => remove(r, dead)))
    return { handled: handled.length, failed: failed.length }
  }

  async function sweepDedupe(t: number, windowMs: number): Promise<number> {
    const page = await datastore.list(KIND, { prefix: 'dedupe/', limit: SWEEP_PAGE, ...(dedupeAfter === undefined ? {} : { after: dedupeAfter }) })
    dedupeAfter = page.next ?? undefined
    const old = page.entries.filter((e) => t - (e.value as unknown as DedupeRecord).at >= windowMs)
    let removed = 0
    for (let i = 0; i < old.length; i += REMOVE_AT_ONCE) {
      await Promise.all(old.slice(i, i + REMOVE_AT_ONCE).map(async ({ key, value }) => {
        const { id } = value as unknown as DedupeRecord
        if ((await datastore.get(KIND, inboundRecordKey(id))) !== null) return
        await dropDedupe(key, id)
        removed++
      }))
    }
    return removed
  }

  return {
    totals,
    async pass() {
      const t = now()
      const windowMs = opts.dedupeWindowMs()
      const { handled, failed } = await sweepRecords(t, windowMs)
      const dedupe = await sweepDedupe(t, windowMs)
      totals.handled += handled
      totals.failed += failed
      totals.dedupe += dedupe
      if (handled + failed + dedupe > 0) log.info({ handled, failed, dedupe }, `inbound mail swept: ${handled} handled and ${failed} failed messages removed, ${dedupe} stray dedupe records`)
      return { handled, failed, dedupe }
    },
  }
}
