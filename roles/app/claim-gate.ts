/**
 * The claim gate of one app worker: Int32 cells in memory the worker shares
 * with its child's main thread, one per request the worker may hold. The
 * main thread offers a request by storing its id in a free cell; the worker
 * claims it when it starts it, and the main thread takes it back (the
 * worker has not started it), each with the same compare-and-swap of that id
 * for 0. Whoever swaps first wins, so a request handed over runs once or is
 * taken back, never both, never neither. Plain code over a
 * `SharedArrayBuffer`: both sides are testable in one thread.
 */

/** Ids are 1 .. 2^31-1 (0 marks a free or settled cell). */
const MAX_ID = 0x7fffffff

export class ClaimGate {
  readonly buffer: SharedArrayBuffer
  private readonly cells: Int32Array

  /** `source`: the number of cells of a new gate, or the buffer of an existing one (the worker's side). */
  constructor(source: number | SharedArrayBuffer) {
    this.buffer = typeof source === 'number' ? new SharedArrayBuffer(source * Int32Array.BYTES_PER_ELEMENT) : source
    this.cells = new Int32Array(this.buffer)
  }

  get size(): number {
    return this.cells.length
  }

  /** Puts request `id` in `cell`, to be claimed or taken back. */
  offer(cell: number, id: number): void {
    Atomics.store(this.cells, cell, id)
  }

  /** The worker starts request `id`: true when it is still there (it runs), false when it was taken back. */
  claim(cell: number, id: number): boolean {
    return Atomics.compareExchange(this.cells, cell, id, 0) === id
  }

  /** The main thread takes request `id` back: true when the worker had not claimed it (it will not run it now). */
  takeBack(cell: number, id: number): boolean {
    return Atomics.compareExchange(this.cells, cell, id, 0) === id
  }

  /** The first cell none of `used` takes. */
  static freeCell(used: readonly { readonly cell: number }[]): number {
    let cell = 0
    while (used.some((held) => held.cell === cell)) cell++
    return cell
  }
}

/** Offer ids for a gate, new at each offer so a stale one never matches. */
export class OfferIds {
  private last = 0

  next(): number {
    this.last = (this.last % MAX_ID) + 1
    return this.last
  }
}
