/**
 * The flap penalty (docs/alerts.md, "Flapping"): every change of a
 * condition (failing → clear or clear → failing) adds one point; the
 * penalty halves every half-life. An incident resolves only once its
 * condition is clear and the penalty is under {@link RELEASE_BELOW}; while it
 * is at or over {@link FLAPPING_AT} the alert is marked flapping. A node that
 * goes down and up ten times in a row therefore stays one open alert, and
 * resolves once when it has been steady for long enough.
 */

/** An incident may resolve once its penalty is under this. One outage (2 changes) waits 0.42 half-lives. */
export const RELEASE_BELOW = 1.5
/** From this penalty on, the alert is marked flapping. */
export const FLAPPING_AT = 4

export interface Penalty {
  value: number
  /** When `value` was last computed (ms). */
  at: number
}

/** The penalty decayed to `now`. */
export function decayed(p: Penalty, now: number, halfLifeMs: number): number {
  const dt = Math.max(0, now - p.at)
  return p.value * 2 ** (-dt / halfLifeMs)
}

/** Records one change at `now`; returns the new penalty. */
export function addChange(p: Penalty, now: number, halfLifeMs: number): number {
  p.value = decayed(p, now, halfLifeMs) + 1
  p.at = now
  return p.value
}

/** How long after `now` the penalty falls under {@link RELEASE_BELOW} (0: already). */
export function releaseInMs(p: Penalty, now: number, halfLifeMs: number): number {
  const v = decayed(p, now, halfLifeMs)
  return v < RELEASE_BELOW ? 0 : Math.ceil(halfLifeMs * Math.log2(v / RELEASE_BELOW)) + 1
}
