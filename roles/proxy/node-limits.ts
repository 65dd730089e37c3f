/**
 * The proxy's per-address limits for the whole node, kept by its parent from
 * what the children report (limits-client.ts): open connections per address,
 * summed over the children, and one requests-per-second token bucket per
 * address (burst = the rate) that every child's admitted requests draw on.
 * What comes out is what the children must refuse: addresses that hold
 * `--max-conns-per-address` connections on the node (until they hold
 * fewer), and addresses whose bucket is empty, each until the moment it holds
 * a token again. 0 turns a limit off.
 *
 * Bounded: a connection is counted only while a child reports it open (a
 * child that exits gives back all of its own at once), and a bucket idle for
 * 10 s is forgotten (it is full again by then).
 */

/** What the children must refuse from now on: connections from `conns.add` (no longer from `conns.remove`), requests from each `rps` address until its time (ms since the epoch). */
export interface Blocked {
  readonly conns: { readonly add: string[]; readonly remove: string[] }
  readonly rps: [string, number][]
}

export interface NodeLimits {
  /** A child's report: connection deltas and admitted requests per address. Returns what changed for the children (null: nothing). */
  report(child: number, conns: readonly (readonly [string, number])[], requests: readonly (readonly [string, number])[]): Blocked | null
  /** The child exited: its connections are given back. */
  childGone(child: number): Blocked | null
  /** Everything blocked now, for a child that starts. */
  state(): Blocked
  /** Forgets idle buckets and past blocks (called once a second). */
  sweep(): void
  size(): { connections: number; connectedAddresses: number; blockedConnections: number; blockedRps: number }
}

interface Bucket {
  tokens: number
  at: number
  /** Refused until then (0: not refused). */
  until: number
}

const IDLE_BUCKET_MS = 10_000

function changes(add: string[], remove: string[], rps: [string, number][]): Blocked | null {
  return add.length + remove.length + rps.length === 0 ? null : { conns: { add, remove }, rps }
}

export function createNodeLimits(maxConns: number, maxRps: number, now: () => number = Date.now): NodeLimits {
  // child → address → its open connections; and the node's sum per address.
  const perChild = new Map<number, Map<string, number>>()
  const open = new Map<string, number>()
  const blocked = new Set<string>()
  const buckets = new Map<string, Bucket>()
  let connections = 0

  /** Moves `address`'s count by `delta` and notes a change of its block in `add`/`remove`. */
  function move(address: string, delta: number, add: string[], remove: string[]): void {
    const n = Math.max(0, (open.get(address) ?? 0) + delta)
    connections += n - (open.get(address) ?? 0)
    if (n === 0) open.delete(address)
    else open.set(address, n)
    if (maxConns === 0) return
    // At the limit: one more would pass it, so new connections are refused from here on.
    if (n >= maxConns && !blocked.has(address)) {
      blocked.add(address)
      add.push(address)
    } else if (n < maxConns && blocked.delete(address)) remove.push(address)
  }

  function take(address: string, n: number, t: number, rps: [string, number][]): void {
    let b = buckets.get(address)
    if (b === undefined) buckets.set(address, (b = { tokens: maxRps, at: t, until: 0 }))
    else {
      b.tokens = Math.min(maxRps, b.tokens + ((t - b.at) * maxRps) / 1000)
      b.at = t
    }
    b.tokens -= n
    if (b.tokens >= 1) return
    // Empty: refused until one token has come back (children admitted more than the node's rate: longer).
    const until = t + Math.ceil(((1 - b.tokens) * 1000) / maxRps)
    if (until > b.until) {
      b.until = until
      rps.push([address, until])
    }
  }

  return {
    report(child, conns, requests) {
      const add: string[] = []
      const remove: string[] = []
      const rps: [string, number][] = []
      if (conns.length > 0) {
        let mine = perChild.get(child)
        if (mine === undefined) perChild.set(child, (mine = new Map()))
        for (const [address, delta] of conns) {
          // A child gives back only what it holds here (a report after its exit was handled counts nothing).
          const held = mine.get(address) ?? 0
          const next = Math.max(0, held + delta)
          if (next === 0) mine.delete(address)
          else mine.set(address, next)
          if (next !== held) move(address, next - held, add, remove)
        }
        if (mine.size === 0) perChild.delete(child)
      }
      if (maxRps > 0 && requests.length > 0) {
        const t = now()
        for (const [address, n] of requests) take(address, n, t, rps)
      }
      return changes(add, remove, rps)
    },
    childGone(child) {
      const mine = perChild.get(child)
      if (mine === undefined) return null
      perChild.delete(child)
      const add: string[] = []
      const remove: string[] = []
      for (const [address, n] of mine) move(address, -n, add, remove)
      return changes(add, remove, [])
    },
    state() {
      const t = now()
      return { conns: { add: [...blocked], remove: [] }, rps: [...buckets].filter(([, b]) => b.until > t).map(([a, b]) => [a, b.until]) }
    },
    sweep() {
      const t = now()
      for (const [address, b] of buckets) if (t - b.at > IDLE_BUCKET_MS && b.until <= t) buckets.delete(address)
    },
    size() {
      const t = now()
      let blockedRps = 0
      for (const b of buckets.values()) if (b.until > t) blockedRps++
      return { connections, connectedAddresses: open.size, blockedConnections: blocked.size, blockedRps }
    },
  }
}
