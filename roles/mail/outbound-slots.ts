/**
 * Delivery slots of one mail node: at most `perNode` deliveries at once, and
 * at most `perDomain` to one destination. `take` waits (first come, first
 * served per domain) until both are free; waiting is never a failure.
 */
export interface Slots {
  take(domain: string): Promise<() => void>
  /** Deliveries running now. */
  readonly busy: number
  /** Deliveries waiting for a slot. */
  readonly waiting: number
}

export function createSlots(perNode: number, perDomain: number): Slots {
  let busy = 0
  const byDomain = new Map<string, number>()
  const queue: { domain: string; grant: (release: () => void) => void }[] = []

  const free = (domain: string): boolean => busy < perNode && (byDomain.get(domain) ?? 0) < perDomain
  function grant(domain: string): () => void {
    busy++
    byDomain.set(domain, (byDomain.get(domain) ?? 0) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      busy--
      const n = (byDomain.get(domain) ?? 1) - 1
      if (n === 0) byDomain.delete(domain)
      else byDomain.set(domain, n)
      pump()
    }
  }
  function pump(): void {
    for (let i = 0; i < queue.length && busy < perNode; ) {
      const w = queue[i]!
      if (free(w.domain)) {
        queue.splice(i, 1)
        w.grant(grant(w.domain))
      } else i++
    }
  }
  return {
    take(domain) {
      if (free(domain) && !queue.some((w) => w.domain === domain)) return Promise.resolve(grant(domain))
      return new Promise((resolve) => queue.push({ domain, grant: resolve }))
    },
    get busy() {
      return busy
    },
    get waiting() {
      return queue.length
    },
  }
}
