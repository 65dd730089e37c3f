/**
 * What the `seed-leader` rule watches (docs/alerts.md, "Rules"): the seeds'
 * leader lease as the seed reached answers the `leader` op. With PostgreSQL
 * seeds a change is the epoch growing; it fails the rule until
 * `--alert-leader-quiet` has passed without another (so a failover is one
 * alert that resolves by itself, and a lease bouncing between seeds stays one
 * alert). One embedded seed has no lease (`fenced` false): nothing to see.
 *
 * The leader last seen and the change in progress are written to the
 * datastore (kind `alerts`, key {@link SEED_LEADER_KEY}), so a change made
 * while the engine moved to another admin node, or restarted, is still seen.
 */
import type { SeedLeaderChange } from '../../../lib/alerts/rules.js'
import type { Logger } from '../../../lib/core/log.js'
import type { Datastore, DatastoreValue } from '../../../lib/storage/datastore.js'
import type { LeaderStatus } from '../../../lib/cli/admin/status.js'

export const SEED_LEADER_KEY = 'status/seed-leader'

interface Seen {
  epoch: number
  holder: string | null
  change: SeedLeaderChange | null
}

export interface SeedLeaderWatch {
  /** Reads back what the previous engine saw; call before the first `saw`. */
  restore(): Promise<void>
  /** A `leader` answer; notes a change when the epoch grew. */
  saw(status: LeaderStatus, now: number): void
  /** The change the rule looks at (null: none yet). */
  change(): SeedLeaderChange | null
}

export function createSeedLeaderWatch(opts: { datastore: Datastore; log: Logger; quietMs: number }): SeedLeaderWatch {
  let seen: Seen | null = null
  const write = (s: Seen) => void opts.datastore.put('alerts', SEED_LEADER_KEY, s as unknown as DatastoreValue).catch((err: unknown) => opts.log.debug({ err }, 'seed leader not written; kept in memory'))
  return {
    async restore() {
      const stored = (await opts.datastore.get('alerts', SEED_LEADER_KEY)) as unknown as Seen | null
      seen = stored !== null && typeof stored.epoch === 'number' ? { epoch: stored.epoch, holder: stored.holder ?? null, change: stored.change ?? null } : null
    },
    saw(l, now) {
      // One embedded seed: no lease, no change to see (and nothing kept that a later PostgreSQL setup would compare with).
      if (!l.fenced || typeof l.epoch !== 'number') return
      // A follower may not know the new holder yet: fill it in once it does.
      const holder = l.leader ? l.seed : l.holder
      if (seen === null) {
        write((seen = { epoch: l.epoch, holder, change: null }))
        return
      }
      if (l.epoch < seen.epoch) return
      if (l.epoch === seen.epoch) {
        if (holder !== null && seen.holder === null) {
          seen.holder = holder
          if (seen.change !== null && seen.change.epoch === l.epoch) seen.change = { ...seen.change, to: holder }
          write(seen)
        }
        return
      }
      const prev = seen.change !== null && now - seen.change.at < opts.quietMs ? seen.change : null
      const change: SeedLeaderChange = { at: now, firstAt: prev?.firstAt ?? now, from: seen.holder, to: holder, epoch: l.epoch, changes: (prev?.changes ?? 0) + 1 }
      opts.log.warn({ from: change.from, to: change.to, epoch: l.epoch }, `seed leader changed: ${change.from ?? 'none'} -> ${change.to ?? 'unknown yet'} (epoch ${l.epoch})`)
      write((seen = { epoch: l.epoch, holder, change }))
    },
    change: () => seen?.change ?? null,
  }
}
