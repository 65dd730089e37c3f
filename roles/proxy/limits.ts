/**
 * Per-address limits of one proxy child: open connections, and requests per
 * second as a token bucket (burst = the rate). A refused request is answered
 * 429 by the proxy itself and never reaches a Live node.
 */

export interface Limits {
  /** Counts a new connection; false when the address is over its connection limit. */
  connect(address: string): boolean
  disconnect(address: string): void
  /** Takes one request token; false when the address is over its rate. */
  request(address: string): boolean
  /** Forgets idle buckets (called once a second). */
  sweep(): void
}

interface Bucket {
  tokens: number
  at: number
}

export function createLimits(maxConns: number, maxRps: number): Limits {
  const conns = new Map<string, number>()
  const buckets = new Map<string, Bucket>()
  return {
    connect(address) {
      const n = (conns.get(address) ?? 0) + 1
      conns.set(address, n)
      return maxConns === 0 || n <= maxConns
    },
    disconnect(address) {
      const n = (conns.get(address) ?? 1) - 1
      if (n <= 0) conns.delete(address)
      else conns.set(address, n)
    },
    request(address) {
      if (maxRps === 0) return true
      const now = Date.now()
      let b = buckets.get(address)
      if (b === undefined) buckets.set(address, (b = { tokens: maxRps, at: now }))
      else {
        b.tokens = Math.min(maxRps, b.tokens + ((now - b.at) * maxRps) / 1000)
        b.at = now
      }
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
    sweep() {
      if (buckets.size === 0) return
      const now = Date.now()
      for (const [address, b] of buckets) if (now - b.at > 10_000) buckets.delete(address)
    },
  }
}
