/**
 * `seed-link` while no alert engine can run (docs/alerts.md, "No seed
 * reachable"). The engine's lease is kept in the datastore, behind the seeds,
 * so an admin node that reaches no seed cannot hold it, and neither can any
 * admin node cut off with it. Each admin node with `--alerts true` then says
 * so itself, once, after `--alert-down-after` probe intervals, and sends the
 * resolve once a seed answers again. Nothing can fence these notifications
 * (they carry no epoch), so two admin nodes cut off together send one each;
 * silences, kept behind the seeds too, do not apply.
 */
import type { AlertNotification, AlertRecord } from '../../../lib/alerts/alert.js'
import { newAlertId } from '../../../lib/alerts/engine.js'

export interface SeedCutoffAlert {
  /** Called every tick: whether a seed is linked, and whether this node runs the engine (which then alerts itself). */
  observe(linked: boolean, engineRunning: boolean, now: number): void
}

export function createSeedCutoffAlert(opts: { admin: string; graceMs: number; notify: (n: AlertNotification) => void }): SeedCutoffAlert {
  let downSince: number | null = null
  let open: AlertRecord | null = null
  return {
    observe(linked, engineRunning, now) {
      if (linked) {
        downSince = null
        if (open === null) return
        const resolved: AlertRecord = {
          ...open, state: 'resolved', resolvedAt: now, updatedAt: now, notified: { opened: true, resolved: true },
          members: open.members.map((m) => ({ ...m, resolvedAt: now })),
        }
        open = null
        return opts.notify({ event: 'resolved', alert: resolved })
      }
      downSince ??= now
      if (open !== null || engineRunning || now - downSince < opts.graceMs) return
      const summary = `admin node ${opts.admin} has reached no seed for ${Math.round((now - downSince) / 1000)} s: no alert engine can run (its lease is kept behind the seeds), so nodes are not probed and nothing else is alerted until a seed answers`
      const details = { since: downSince, admin: opts.admin }
      open = {
        id: newAlertId(now), rule: 'seed-link', node: opts.admin, nodes: [opts.admin], grouped: false, state: 'open', openedAt: now, resolvedAt: null,
        summary, details, members: [{ node: opts.admin, openedAt: now, resolvedAt: null, summary, details }],
        flapping: false, changes: 0, notified: { opened: true, resolved: false }, silencedBy: null, updatedAt: now,
      }
      opts.notify({ event: 'opened', alert: open })
    },
  }
}
