/**
 * The seeds' leader lease in PostgreSQL (table `espra_leader`, migration 2):
 * one row naming the holder, the meta address nodes reach it at, the epoch
 * (the fencing token: one more on every takeover) and when the lease ends.
 * Every step is one plain statement on any pooled connection (no advisory
 * locks, no session state), so it works behind PgBouncer in transaction
 * mode. Times are the database server's clock, so seeds' clocks do not matter.
 */
import { NOW_MS } from './postgres-clock.js'
import type { Postgres } from './postgres.js'

export interface LeaseRow {
  readonly holder: string
  readonly address: string
  readonly epoch: number
  /** Server ms when the lease ends. */
  readonly expiresAt: number
  /** The server's clock when the row was read. */
  readonly now: number
}

type RawRow = { holder: string; address: string; epoch: string; expires_at: string; now: string }
const toRow = (r: RawRow): LeaseRow => ({ holder: r.holder, address: r.address, epoch: Number(r.epoch), expiresAt: Number(r.expires_at), now: Number(r.now) })

/**
 * Takes the lease if nobody holds it or its holder's lease has run out
 * (then the epoch grows by one). Concurrent takers serialise on the row:
 * the second re-checks the expiry against the first's write and gets
 * nothing. Resolves with the new epoch, or null when someone else holds it.
 */
export async function acquireLease(db: Postgres, holder: string, address: string, leaseMs: number): Promise<number | null> {
  const { rows } = await db.query<{ epoch: string }>(
    `INSERT INTO espra_leader AS l (id, holder, address, epoch, expires_at) VALUES (1, $1, $2, 1, ${NOW_MS} + $3)
     ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, address = EXCLUDED.address, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
     WHERE l.expires_at <= ${NOW_MS}
     RETURNING epoch`,
    [holder, address, leaseMs],
  )
  return rows.length === 0 ? null : Number(rows[0]!.epoch)
}

/** Extends a lease still held under `epoch`; false when it ran out or was taken over. */
export async function renewLease(db: Postgres, holder: string, epoch: number, leaseMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE espra_leader SET expires_at = ${NOW_MS} + $3 WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > ${NOW_MS}`,
    [holder, epoch, leaseMs],
  )
  return rowCount === 1
}

/** Ends a lease now (a graceful stop), so a follower takes over on its next look instead of waiting for the expiry. */
export async function releaseLease(db: Postgres, holder: string, epoch: number): Promise<void> {
  await db.query(`UPDATE espra_leader SET expires_at = ${NOW_MS} WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > ${NOW_MS}`, [holder, epoch])
}

/** The row as it is (null before anyone ever led). */
export async function readLease(db: Postgres): Promise<LeaseRow | null> {
  const { rows } = await db.query<RawRow>(`SELECT holder, address, epoch, expires_at, ${NOW_MS} AS now FROM espra_leader WHERE id = 1`)
  return rows.length === 0 ? null : toRow(rows[0]!)
}
