/**
 * A proxy child's side of the node-wide per-address limits (node-limits.ts,
 * kept by the parent: limits-parent.ts). Every check stays synchronous and
 * local, as a request must not wait for another process: the child counts
 * as before (limits.ts, so one child alone never passes a limit), and also
 * refuses what the parent says the node as a whole is over. What it admits
 * it reports to the parent, one message per REPORT_MS at most (connections
 * opened and closed, requests taken, per address), and the parent answers
 * every child with what to refuse from then on.
 *
 * So a limit holds for the node within one report's delay: children may
 * together admit past it only in the few milliseconds before the parent's
 * answer arrives (requests: the node's bucket then goes below zero and the
 * address waits longer, so the rate holds on average). A parent that does
 * not answer leaves each child holding its own limit, as before (fail open
 * to the per-child count). Nothing is reported for a limit set to 0.
 */
import type { ParentChannel } from '../../lib/process/role.js'
import type { Limits } from './limits.js'
import type { Blocked } from './node-limits.js'

/** Child → parent one-way: what the child admitted since its last report. */
export interface LimitsReport {
  readonly t: 'proxy-limits-report'
  readonly conns: [string, number][]
  readonly requests: [string, number][]
}

/** Child → parent request at start: everything blocked now (answered with a {@link Blocked}). */
export interface LimitsStateRequest {
  readonly t: 'proxy-limits-state'
}

/** Parent → children: what changed. */
export interface LimitsBlockedMessage extends Blocked {
  readonly t: 'proxy-limits-blocked'
}

/** How long a child gathers what it admitted before it reports it. */
export const REPORT_MS = 10

export interface LimitsClientOptions {
  readonly parent: ParentChannel
  /** The child's own counts (limits.ts). */
  readonly local: Limits
  readonly maxConns: number
  readonly maxRps: number
}

/** The `Limits` a proxy child's connections use: its own counts, and the node's blocks. */
export function createLimitsClient(opts: LimitsClientOptions): Limits {
  const { parent, local, maxConns, maxRps } = opts
  const blockedConns = new Set<string>()
  const blockedRps = new Map<string, number>()
  const conns = new Map<string, number>()
  const requests = new Map<string, number>()
  let timer: NodeJS.Timeout | null = null

  const apply = (b: Blocked): void => {
    for (const a of b.conns.remove) blockedConns.delete(a)
    for (const a of b.conns.add) blockedConns.add(a)
    for (const [a, until] of b.rps) if (until > (blockedRps.get(a) ?? 0)) blockedRps.set(a, until)
  }
  parent.onMessage((body) => {
    const msg = body as Partial<LimitsBlockedMessage> | null
    if (msg?.t === 'proxy-limits-blocked' && msg.conns !== undefined && Array.isArray(msg.rps)) apply(msg as Blocked)
  })
  if (maxConns > 0 || maxRps > 0) {
    // A parent that does not answer: the child holds its own limits until it does.
    parent.request<Blocked>({ t: 'proxy-limits-state' } satisfies LimitsStateRequest, 5000).then(apply, () => undefined)
  }

  const flush = (): void => {
    timer = null
    if (conns.size === 0 && requests.size === 0) return
    const report: LimitsReport = { t: 'proxy-limits-report', conns: [...conns], requests: [...requests] }
    conns.clear()
    requests.clear()
    parent.send(report)
  }
  const note = (map: Map<string, number>, address: string, n: number): void => {
    const next = (map.get(address) ?? 0) + n
    if (next === 0) map.delete(address)
    else map.set(address, next)
    timer ??= setTimeout(flush, REPORT_MS).unref()
  }

  return {
    connect(address) {
      const ok = local.connect(address)
      if (maxConns === 0) return ok
      note(conns, address, 1)
      return ok && !blockedConns.has(address)
    },
    disconnect(address) {
      local.disconnect(address)
      if (maxConns > 0) note(conns, address, -1)
    },
    request(address) {
      if (maxRps === 0) return true
      const until = blockedRps.get(address)
      if (until !== undefined) {
        if (until > Date.now()) return false
        blockedRps.delete(address)
      }
      if (!local.request(address)) return false
      note(requests, address, 1)
      return true
    },
    sweep() {
      local.sweep()
      const now = Date.now()
      for (const [a, until] of blockedRps) if (until <= now) blockedRps.delete(a)
    },
  }
}
