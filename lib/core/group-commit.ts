/**
 * Group commit: callers submit one item each and wait for its result, while
 * the items are written in groups, one `flush` call per group. No timer: an
 * item submitted while no flush runs is flushed at once (alone, under light
 * load); items submitted while `maxInFlight` flushes run wait together for
 * the next free one. So a group grows with the load, and the cost of one
 * flush (an fsync, a round trip) is shared by everything that arrived while
 * the previous one ran.
 */

export interface GroupCommitOptions<T, R> {
  /**
   * Writes a group. Resolves with one result per item, in order (an `Error`
   * rejects that item alone); a rejection rejects every item of the group.
   */
  readonly flush: (items: readonly T[]) => Promise<readonly (R | Error)[]>
  /** Items in one group at most. */
  readonly maxItems: number
  /** Flushes running at once (1: the classic group commit; 2: one fills while one writes). */
  readonly maxInFlight: number
  /** An item's share of `maxWeight` (e.g. its encoded bytes, to fit a frame); default 1. */
  readonly weight?: (item: T) => number
  /** A group's total weight at most (a single heavier item still goes, alone). */
  readonly maxWeight?: number
}

export interface GroupCommit<T, R> {
  submit(item: T): Promise<R>
  /** Items submitted and not settled yet. */
  readonly pending: number
}

interface Waiting<T, R> {
  readonly item: T
  readonly weight: number
  readonly resolve: (r: R) => void
  readonly reject: (err: unknown) => void
}

export function createGroupCommit<T, R>(opts: GroupCommitOptions<T, R>): GroupCommit<T, R> {
  const queue: Waiting<T, R>[] = []
  const maxWeight = opts.maxWeight ?? Infinity
  let inFlight = 0
  let pending = 0

  function next(): void {
    while (inFlight < opts.maxInFlight && queue.length > 0) {
      let weight = 0
      let n = 0
      while (n < queue.length && n < opts.maxItems && (n === 0 || weight + queue[n]!.weight <= maxWeight)) weight += queue[n++]!.weight
      void run(queue.splice(0, n))
    }
  }

  async function run(group: Waiting<T, R>[]): Promise<void> {
    inFlight++
    try {
      const results = await opts.flush(group.map((w) => w.item))
      if (results.length !== group.length) throw new Error(`group commit: flush answered ${results.length} results for ${group.length} items`)
      group.forEach((w, i) => {
        const r = results[i]!
        if (r instanceof Error) w.reject(r)
        else w.resolve(r as R)
      })
    } catch (err) {
      for (const w of group) w.reject(err)
    } finally {
      inFlight--
      pending -= group.length
      next()
    }
  }

  return {
    submit(item) {
      pending++
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, weight: opts.weight?.(item) ?? 1, resolve, reject })
        next()
      })
    },
    get pending() {
      return pending
    },
  }
}
