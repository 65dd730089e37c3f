/**
 * Wake-ups of slot-ring readers (roles/app/slot-ring.ts) put off to the end
 * of the event loop's turn: the entries one thread publishes to a sleeping
 * reader during a turn (the requests uWS hands over in one poll, the answers
 * a worker writes in one batch) cost that reader one wake-up, not one each.
 * A wake-up through `Atomics.notify` to an `Atomics.waitAsync` waiter was
 * the largest single cost of a child's main thread under load
 * (docs/benchmarks.md, `bench/app-dispatch`). Nothing is lost by waiting:
 * a reader is only ever asleep with nothing to read, and the turn always
 * ends.
 */
import type { SlotRing } from './slot-ring.js'

export class WakeBatch {
  private readonly due = new Set<SlotRing>()
  private scheduled = false

  /** `schedule` runs its callback once the turn's other work is done (`setImmediate`; a test passes its own). */
  constructor(private readonly schedule: (run: () => void) => void = setImmediate) {}

  /** Wakes `ring`'s reader at the end of this turn (once, however often it is added). */
  add(ring: SlotRing): void {
    this.due.add(ring)
    if (this.scheduled) return
    this.scheduled = true
    this.schedule(this.flush)
  }

  /** Wakes every reader due now; how many were asleep. */
  readonly flush = (): number => {
    this.scheduled = false
    let woken = 0
    for (const ring of this.due) woken += ring.wake()
    this.due.clear()
    return woken
  }
}
