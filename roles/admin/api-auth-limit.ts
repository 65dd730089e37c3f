/**
 * Failed authentications per client address, counted once per node in the
 * parent: children share the public port (the kernel spreads one client's
 * connections over them), so counts kept per child would give an address
 * N times the budget. A child reports each failure over the role IPC and
 * learns the answer; the parent tells every child when an address is
 * blocked, so each answers 429 without asking.
 *
 * A fixed window per address, opened by its first failure: more than
 * `limit` failures in it block the address until the window ends.
 */

/** Role IPC messages between the admin parent and its children. */
export interface AuthFailedRequest {
  k: 'auth-failed'
  address: string
}
export interface AuthBlockedMessage {
  k: 'auth-blocked'
  address: string
  /** ms since the epoch. */
  until: number
}

/** Addresses tracked at most; past this the oldest windows are forgotten (a flood of addresses cannot grow the map). */
const MAX_ADDRESSES = 100_000

export class AuthFailureCounter {
  private readonly windows = new Map<string, { start: number; failures: number }>()

  constructor(private readonly limit: number, private readonly windowMs: number) {}

  /** Counts one failure; returns until when the address is blocked (null: not blocked). */
  fail(address: string, now: number): number | null {
    let w = this.windows.get(address)
    if (w === undefined || now - w.start >= this.windowMs) {
      this.windows.delete(address)
      if (this.windows.size >= MAX_ADDRESSES) this.windows.delete(this.windows.keys().next().value!)
      this.windows.set(address, (w = { start: now, failures: 0 }))
    }
    w.failures++
    return w.failures > this.limit ? w.start + this.windowMs : null
  }

  /** Forgets windows that ended (called now and then). */
  sweep(now: number): void {
    for (const [address, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(address)
  }
}

/** A child's view: the addresses the parent said are blocked. */
export class BlockedAddresses {
  private readonly until = new Map<string, number>()

  block(address: string, until: number): void {
    this.until.set(address, until)
  }

  /** Seconds left for a blocked address (at least 1), or 0. */
  retryAfter(address: string, now: number): number {
    const until = this.until.get(address)
    if (until === undefined) return 0
    if (until <= now) {
      this.until.delete(address)
      return 0
    }
    return Math.max(1, Math.ceil((until - now) / 1000))
  }
}
