/**
 * Which admin node runs the alert engine (docs/alerts.md, "One engine per
 * cluster"): a lease record in the datastore (kind `alerts`, key
 * {@link ENGINE_LEASE_KEY}) every admin node with `--alerts true` competes
 * for, taken and renewed with the datastore's conditional update, so it works
 * the same on the embedded store and on PostgreSQL.
 *
 * - Every node looks every quarter lease. The holder renews (`beat` + 1,
 *   matched on holder and epoch); a renewal that does not match means another
 *   node took the lease: step down at once.
 * - The holder counts its lease from the moment it *sent* its last renewal
 *   that succeeded and gives itself three quarters of it ({@link validFor}):
 *   past that it holds nothing, whatever is wrong (datastore out of reach,
 *   process paused), judged on every call, so a process that wakes from a
 *   SIGSTOP notifies nothing before its timers have even run.
 * - A standby takes the lease when it was released (holder null), when its
 *   record has not changed for a whole lease as the standby watched it (the
 *   standby's own monotonic clock counts, so clocks need not agree), when its
 *   expiry is more than a lease past by this node's clock (a cluster whose
 *   admin nodes were all down), or when it names this node id (this node's
 *   previous life). The epoch grows by one at every takeover: a fencing token
 *   every notification carries.
 */
import type { Logger } from '../core/log.js'
import type { Datastore, DatastoreValue } from '../storage/datastore.js'

export const ENGINE_LEASE_KEY = 'engine/lease'

/** The lease record as stored. */
export interface EngineLeaseRecord {
  /** The admin node id holding it; null once released. */
  holder: string | null
  /** Grows by one at every takeover. */
  epoch: number
  /** Grows by one at every renewal (a standby watches it change). */
  beat: number
  leaseMs: number
  /** ms since the epoch, by the holder's clock: when the holder took it, last renewed it, and when it runs out. */
  acquiredAt: number
  renewedAt: number
  expiresAt: number
}

export interface EngineLease {
  /** This node's epoch while it validly holds the lease, else null (judged now). */
  epoch(): number | null
  /** Reads the record back and says whether this node still holds `epoch` (checked before every notification). Throws when the datastore does not answer. */
  confirm(epoch: number): Promise<boolean>
  /** Ends the lease (if held) so a standby takes over at its next look; stops looking. */
  close(): Promise<void>
  /** Stops looking; the lease runs out by itself. */
  destroy(): void
}

export interface EngineLeaseOptions {
  readonly datastore: Datastore
  readonly holder: string
  readonly leaseMs: number
  readonly log: Logger
  /** Only look while this says the datastore can answer (the seed link is up). */
  readonly reachable: () => boolean
  readonly onAcquire: (epoch: number) => void
  readonly onLose: (epoch: number, reason: string) => void
}

/** The part of a lease the holder trusts after a renewal sent at t: three quarters of it. */
export const validFor = (leaseMs: number): number => Math.floor((leaseMs * 3) / 4)

export function startEngineLease(opts: EngineLeaseOptions): EngineLease {
  const { datastore, holder, leaseMs, log } = opts
  const stepMs = Math.max(50, Math.floor(leaseMs / 4))
  let held: { epoch: number; beat: number; acquiredAt: number } | null = null
  let validUntil = 0
  /** The record a standby last saw change, and when (performance.now()). */
  let seen: { epoch: number; beat: number; holder: string | null; at: number } | null = null
  let busy = false
  let closed = false

  const get = async (): Promise<EngineLeaseRecord | null> => (await datastore.get('alerts', ENGINE_LEASE_KEY)) as unknown as EngineLeaseRecord | null
  const record = (epoch: number, beat: number, acquiredAt: number): DatastoreValue => {
    const now = Date.now()
    return { holder, epoch, beat, leaseMs, acquiredAt, renewedAt: now, expiresAt: now + leaseMs } satisfies EngineLeaseRecord
  }

  function lose(reason: string): void {
    if (held === null) return
    const { epoch } = held
    held = null
    validUntil = 0
    log.warn({ epoch, reason }, `alert engine lease lost: ${reason}; standing by`)
    opts.onLose(epoch, reason)
  }

  function epoch(): number | null {
    if (held === null) return null
    if (performance.now() < validUntil) return held.epoch
    // Past the deadline and the timer has not run yet (the process was paused): hold nothing, now.
    const late = Math.round(performance.now() - validUntil)
    queueMicrotask(() => lose(`not renewed in time (${late} ms past its deadline)`))
    return null
  }

  async function renew(): Promise<void> {
    const h = held!
    if (epoch() === null) return
    const sentAt = performance.now()
    const ok = await datastore.putIf('alerts', ENGINE_LEASE_KEY, record(h.epoch, h.beat + 1, h.acquiredAt), { holder, epoch: h.epoch, beat: h.beat })
    if (held !== h) return
    if (!ok) {
      const now = await get().catch(() => null)
      return lose(now === null ? `the lease record of epoch ${h.epoch} is gone` : `taken over by ${now.holder ?? 'nobody'} (epoch ${now.epoch})`)
    }
    h.beat++
    validUntil = Math.max(validUntil, sentAt + validFor(leaseMs))
    // A renewal that took longer than the lease allows: already past the deadline.
    epoch()
  }

  async function take(current: EngineLeaseRecord | null, why: string): Promise<void> {
    const next = current === null ? 1 : current.epoch + 1
    const sentAt = performance.now()
    const acquiredAt = Date.now()
    const match = current === null ? null : { holder: current.holder, epoch: current.epoch, beat: current.beat }
    if (!(await datastore.putIf('alerts', ENGINE_LEASE_KEY, record(next, 0, acquiredAt), match))) return
    if (closed) {
      await datastore.putIf('alerts', ENGINE_LEASE_KEY, { ...record(next, 0, acquiredAt), holder: null, expiresAt: 0 }, { holder, epoch: next, beat: 0 }).catch(() => {})
      return
    }
    held = { epoch: next, beat: 0, acquiredAt }
    validUntil = sentAt + validFor(leaseMs)
    seen = null
    log.info({ epoch: next, leaseMs, previous: current?.holder ?? null }, `alert engine lease taken (${why}): this admin node runs the alert engine`)
    opts.onAcquire(next)
  }

  async function look(): Promise<void> {
    const current = await get()
    if (current === null) return take(null, 'no holder yet')
    if (current.holder === null) return take(current, `released by the previous holder (epoch ${current.epoch})`)
    if (current.holder === holder) return take(current, 'this node id held it before a restart')
    const now = performance.now()
    if (seen === null || seen.epoch !== current.epoch || seen.beat !== current.beat || seen.holder !== current.holder) {
      if (seen === null || seen.holder !== current.holder || seen.epoch !== current.epoch) log.info({ holder: current.holder, epoch: current.epoch }, `alert engine run by ${current.holder} (epoch ${current.epoch}); standing by`)
      seen = { epoch: current.epoch, beat: current.beat, holder: current.holder, at: now }
      if (current.expiresAt + leaseMs < Date.now()) return take(current, `${current.holder}'s lease ran out at ${new Date(current.expiresAt).toISOString()}`)
      return
    }
    if (now - seen.at >= leaseMs) return take(current, `${current.holder} did not renew it for ${Math.round(now - seen.at)} ms`)
  }

  async function tick(): Promise<void> {
    if (busy || closed) return
    busy = true
    try {
      if (held !== null) await renew()
      else if (opts.reachable()) await look()
    } catch (err) {
      // The datastore is away: a holder keeps its deadline, a standby keeps looking.
      log.debug({ err }, 'alert engine lease: look failed')
    } finally {
      busy = false
    }
  }

  const ticker = setInterval(() => void tick(), stepMs)
  ticker.unref()
  void tick()

  return {
    epoch,
    async confirm(e) {
      if (epoch() !== e) return false
      const current = await get()
      return current !== null && current.holder === holder && current.epoch === e && epoch() === e
    },
    async close() {
      if (closed) return
      closed = true
      clearInterval(ticker)
      const h = held
      held = null
      if (h === null) return
      const released = { ...record(h.epoch, h.beat + 1, h.acquiredAt), holder: null, expiresAt: 0 }
      await datastore.putIf('alerts', ENGINE_LEASE_KEY, released, { holder, epoch: h.epoch, beat: h.beat }).then(
        (ok) => log.info({ epoch: h.epoch }, ok ? 'alert engine lease released' : 'alert engine lease was no longer ours at stop'),
        (err: unknown) => log.warn({ err, epoch: h.epoch }, 'alert engine lease not released; it runs out by itself'),
      )
    },
    destroy() {
      closed = true
      clearInterval(ticker)
      held = null
    },
  }
}

/** The lease as `GET /api/alerts/engine` and `admin status` show it; null when no admin node ever took it. */
export async function readEngineLease(datastore: Datastore): Promise<(EngineLeaseRecord & { held: boolean }) | null> {
  const r = (await datastore.get('alerts', ENGINE_LEASE_KEY)) as unknown as EngineLeaseRecord | null
  if (r === null) return null
  return { holder: r.holder, epoch: r.epoch, beat: r.beat, leaseMs: r.leaseMs, acquiredAt: r.acquiredAt, renewedAt: r.renewedAt, expiresAt: r.expiresAt, held: r.holder !== null && r.expiresAt > Date.now() }
}
