/**
 * Which seed leads (docs/postgres.md, "Several seeds: the leader lease").
 *
 * Embedded datastore: one seed, always the leader, pushes not stamped.
 * PostgreSQL: every seed looks at the lease row every quarter lease
 * (`--seed-lease`); a follower takes it when it has run out (the epoch
 * grows by one), the leader renews it. The leader counts its lease from
 * the moment it *sent* its last successful renewal and gives itself three
 * quarters of it: past that it steps down by itself, whatever is wrong (the
 * database lost, the process paused, a renewal stuck), a quarter lease
 * before the database lets anyone else take over. `pushEpoch()` judges that
 * deadline on every call, so a process that wakes from a pause sends no push
 * before its timers have even run.
 */
import type { Logger } from '../lib/core/log.js'
import { acquireLease, readLease, releaseLease, renewLease, type LeaseRow } from '../lib/storage/postgres-lease.js'
import type { Postgres } from '../lib/storage/postgres.js'

export interface LeaderView {
  /** True while this seed validly holds the lease. */
  readonly leader: boolean
  /** This seed's epoch while it leads, else the newest epoch it has seen (null before any). */
  readonly epoch: number | null
  /** The leading seed's node id and meta address as last seen; null when nobody holds a live lease. */
  readonly holder: string | null
  readonly address: string | null
}

export interface Leadership {
  /** False with the embedded datastore: one seed that always leads; pushes carry no epoch. */
  readonly fenced: boolean
  readonly leaseMs: number
  /** True while this seed may act as the leader (registry, routing, pushes). */
  isLeader(): boolean
  /** The epoch to stamp on a push while leading; null when this seed must not push. */
  pushEpoch(): number | null
  view(): LeaderView
  onLead(listener: (epoch: number) => void): void
  onStepDown(listener: (reason: string) => void): void
  /** Stops looking; a leader ends its lease so a follower takes over at once. */
  close(): Promise<void>
}

/** The single seed of an embedded datastore. */
export function soleLeadership(holder: string, address: string): Leadership {
  return {
    fenced: false,
    leaseMs: 0,
    isLeader: () => true,
    pushEpoch: () => null,
    view: () => ({ leader: true, epoch: null, holder, address }),
    onLead: () => {},
    onStepDown: () => {},
    close: async () => {},
  }
}

export interface LeaseOptions {
  readonly db: Postgres
  /** This seed's node id. */
  readonly holder: string
  /** host:port where nodes reach this seed's meta port. */
  readonly address: string
  readonly leaseMs: number
  readonly log: Logger
  /** Called on every takeover, with the new epoch (also when the first look takes the lease). */
  readonly onLead?: (epoch: number) => void
  readonly onStepDown?: (reason: string) => void
}

/** Starts looking at the lease; resolves after the first look (so a seed knows at start whether it leads). */
export async function startLeaseLeadership(opts: LeaseOptions): Promise<Leadership> {
  const lease = new LeaseLeadership(opts)
  await lease.tick()
  lease.schedule()
  return lease
}

class LeaseLeadership implements Leadership {
  readonly fenced = true
  readonly leaseMs: number
  private readonly opts: LeaseOptions
  private readonly stepMs: number
  /** Our epoch while leading. */
  private epoch: number | null = null
  /** performance.now() past which we no longer lead unless renewed. */
  private validUntil = 0
  private known: LeaseRow | null = null
  private seenEpoch: number | null = null
  private busy = false
  private closed = false
  private ticker: NodeJS.Timeout | null = null
  private deadline: NodeJS.Timeout | null = null
  private readonly leadListeners: ((epoch: number) => void)[] = []
  private readonly stepDownListeners: ((reason: string) => void)[] = []

  constructor(opts: LeaseOptions) {
    this.opts = opts
    this.leaseMs = opts.leaseMs
    this.stepMs = Math.max(1, Math.floor(opts.leaseMs / 4))
    if (opts.onLead) this.leadListeners.push(opts.onLead)
    if (opts.onStepDown) this.stepDownListeners.push(opts.onStepDown)
  }

  schedule(): void {
    if (this.closed) return
    this.ticker = setInterval(() => void this.tick(), this.stepMs)
    this.ticker.unref()
  }

  isLeader(): boolean {
    return this.pushEpoch() !== null
  }

  pushEpoch(): number | null {
    if (this.epoch === null) return null
    if (performance.now() < this.validUntil) return this.epoch
    // Past the deadline and the timer has not run yet (the process was paused): lead no more, now.
    queueMicrotask(() => this.expire())
    return null
  }

  view(): LeaderView {
    if (this.isLeader()) return { leader: true, epoch: this.epoch, holder: this.opts.holder, address: this.opts.address }
    const k = this.known
    // A row naming this seed is stale once it does not lead (it stepped down): nobody known until the next look.
    const live = k !== null && k.expiresAt > k.now && k.holder !== this.opts.holder
    return { leader: false, epoch: this.seenEpoch, holder: live ? k.holder : null, address: live ? k.address : null }
  }

  onLead(listener: (epoch: number) => void): void {
    this.leadListeners.push(listener)
  }

  onStepDown(listener: (reason: string) => void): void {
    this.stepDownListeners.push(listener)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.ticker) clearInterval(this.ticker)
    if (this.deadline) clearTimeout(this.deadline)
    const epoch = this.epoch
    this.epoch = null
    if (epoch !== null) {
      await releaseLease(this.opts.db, this.opts.holder, epoch).then(
        () => this.opts.log.info({ epoch }, 'seed lease released'),
        (err: unknown) => this.opts.log.warn({ err, epoch }, 'seed lease not released; it runs out by itself'),
      )
    }
  }

  /** One look: renew while leading, else try to take the lease and note who holds it. */
  async tick(): Promise<void> {
    if (this.busy || this.closed) return
    this.busy = true
    try {
      if (this.epoch !== null) await this.renew()
      else await this.acquire()
    } catch (err) {
      // The database is away (or refused): a leader keeps its deadline, a follower keeps looking.
      this.opts.log.debug({ err }, 'seed lease: look failed')
    } finally {
      this.busy = false
    }
  }

  private async renew(): Promise<void> {
    const epoch = this.epoch!
    if (performance.now() >= this.validUntil) return this.expire()
    const sentAt = performance.now()
    const held = await renewLease(this.opts.db, this.opts.holder, epoch, this.leaseMs)
    if (this.epoch !== epoch || this.closed) return
    if (!held) return this.stepDown(`the lease of epoch ${epoch} was taken over or ran out`)
    this.extend(sentAt)
  }

  private async acquire(): Promise<void> {
    const sentAt = performance.now()
    const epoch = await acquireLease(this.opts.db, this.opts.holder, this.opts.address, this.leaseMs)
    if (this.closed) {
      if (epoch !== null) await releaseLease(this.opts.db, this.opts.holder, epoch).catch(() => {})
      return
    }
    if (epoch !== null) {
      this.seenEpoch = epoch
      this.epoch = epoch
      this.extend(sentAt)
      if (this.epoch === null) return // the statement took longer than the lease allows: already stepped down
      this.opts.log.info({ epoch, leaseMs: this.leaseMs, address: this.opts.address }, 'seed leads the cluster')
      for (const listener of this.leadListeners) listener(epoch)
      return
    }
    const row = await readLease(this.opts.db)
    if (row === null) return
    const before = this.known
    this.known = row
    if (this.seenEpoch === null || row.epoch > this.seenEpoch) this.seenEpoch = row.epoch
    if (before === null || before.epoch !== row.epoch) {
      this.opts.log.info({ leader: row.holder, address: row.address, epoch: row.epoch }, 'seed follows the leader')
    }
  }

  /** The lease now counts from `sentAt` (when the statement that took or renewed it was sent). */
  private extend(sentAt: number): void {
    this.validUntil = sentAt + this.leaseMs - this.stepMs
    const left = this.validUntil - performance.now()
    if (left <= 0) return this.expire()
    if (this.deadline) clearTimeout(this.deadline)
    this.deadline = setTimeout(() => this.expire(), left)
    this.deadline.unref()
  }

  /** The deadline passed without a renewal. */
  private expire(): void {
    if (this.epoch === null || performance.now() < this.validUntil) return
    this.stepDown(`the lease of epoch ${this.epoch} could not be renewed within ${this.leaseMs - this.stepMs} ms`)
  }

  private stepDown(reason: string): void {
    const epoch = this.epoch
    if (epoch === null) return
    this.epoch = null
    this.known = null
    if (this.deadline) clearTimeout(this.deadline)
    this.deadline = null
    this.opts.log.warn({ epoch, reason }, 'seed stepped down: no longer the leader')
    for (const listener of this.stepDownListeners) listener(reason)
  }
}
