/**
 * The hourly clean-up each admin child runs (and once at start): audit
 * entries past `--admin-audit-retention`, idempotency records past 24 h,
 * dashboard sessions past their end and push-build uploads past their hour.
 * Several children (or admin nodes) sweeping at once only delete the same
 * keys twice; a sweep that fails (no seed) is logged and tried next hour.
 */
import type { Logger } from '../../lib/core/log.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import { sweepAudit } from './api-audit.js'
import { sweepIdempotency } from './api-idempotency.js'
import { sweepPushes } from './api-push-store.js'
import type { SessionStore } from './dashboard/sessions.js'

const SWEEP_EVERY_MS = 3_600_000
/** The first sweep waits for the seed link to come up. */
const FIRST_SWEEP_MS = 10_000

export function startSweeps(datastore: Datastore, retentionMs: number, log: Logger, sessions: SessionStore): { stop(): void } {
  let running = false
  const sweep = (): void => {
    if (running) return
    running = true
    Promise.all([sweepAudit(datastore, retentionMs), sweepIdempotency(datastore), sessions.sweep(), sweepPushes(datastore)])
      .then(([audit, keys, ended, pushes]) => (audit + keys + ended + pushes > 0 ? log.info({ audit, idempotencyKeys: keys, sessions: ended, pushUploads: pushes }, 'admin records swept') : undefined))
      .catch((err: unknown) => log.warn({ err }, 'admin records not swept (tried again in an hour)'))
      .finally(() => (running = false))
  }
  const first = setTimeout(sweep, FIRST_SWEEP_MS)
  const timer = setInterval(sweep, SWEEP_EVERY_MS)
  first.unref()
  timer.unref()
  return {
    stop() {
      clearTimeout(first)
      clearInterval(timer)
    },
  }
}
