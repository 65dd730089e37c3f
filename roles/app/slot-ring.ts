/**
 * A ring of fixed-size byte slots in a `SharedArrayBuffer`: one writer, one
 * reader, each on its own thread (an app child's main thread and one of its
 * workers; one ring each way). The writer fills the next free slot and
 * publishes it; the reader reads the oldest published slot and frees it.
 * Wake-ups are batched: a reader with nothing to read asks to be woken
 * (`sleep`), and only the first publish after that wakes it (`publish` says
 * so); a reader busy elsewhere reads what piled up when it comes back, with
 * no wake-up at all. Plain code over the buffer: testable in one thread.
 *
 * Layout: three Int32 counters (head: entries read, tail: entries
 * published, both counting up and wrapping; asleep: 1 while the reader
 * waits), then `slots` slots of `slotSize` bytes, each an Uint32 length and
 * the entry's bytes.
 */

/** `Atomics.waitAsync` (Node 16+; TypeScript types it only from lib es2024). */
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> }
}).waitAsync

const HEAD = 0
const TAIL = 1
const ASLEEP = 2
const HEADER_BYTES = 16
const LENGTH_BYTES = 4

export class SlotRing {
  readonly buffer: SharedArrayBuffer
  readonly slots: number
  /** The most bytes one entry holds. */
  readonly capacity: number
  private readonly counters: Int32Array
  private readonly lengths: DataView
  /** Each slot's entry bytes. */
  private readonly views: Buffer[]
  /** The reader's wait in progress (one at a time). */
  private waiting: Promise<unknown> | null = null

  /** A new ring of `slots` slots of `slotSize` bytes, or the ring in `buffer` (the other thread's side). */
  constructor(source: SharedArrayBuffer | { slots: number; slotSize: number }, slotSize?: number) {
    if (source instanceof SharedArrayBuffer) {
      this.buffer = source
      this.slots = (source.byteLength - HEADER_BYTES) / slotSize!
    } else {
      this.buffer = new SharedArrayBuffer(HEADER_BYTES + source.slots * source.slotSize)
      this.slots = source.slots
      slotSize = source.slotSize
    }
    if (!Number.isInteger(this.slots) || this.slots < 1 || slotSize! <= LENGTH_BYTES) throw new RangeError('a slot ring needs at least one slot of more than 4 bytes')
    this.capacity = slotSize! - LENGTH_BYTES
    this.counters = new Int32Array(this.buffer, 0, 3)
    this.lengths = new DataView(this.buffer)
    this.views = Array.from({ length: this.slots }, (_, i) => Buffer.from(this.buffer, HEADER_BYTES + i * slotSize! + LENGTH_BYTES, this.capacity))
  }

  private offset(n: number): number {
    return (n >>> 0) % this.slots
  }

  /** Entries published and not read yet. */
  get size(): number {
    return (Atomics.load(this.counters, TAIL) - Atomics.load(this.counters, HEAD)) | 0
  }

  /** Writer: the bytes of the next free slot to write an entry into, or null when every slot holds an unread entry. */
  free(): Buffer | null {
    if (this.size >= this.slots) return null
    return this.views[this.offset(Atomics.load(this.counters, TAIL))]!
  }

  /**
   * Writer: publishes the entry written into `free()`'s slot (`length`
   * bytes). True when the reader asked to be woken: call `wake()` (at once,
   * or after publishing a few more).
   */
  publish(length: number): boolean {
    const tail = Atomics.load(this.counters, TAIL)
    const at = this.offset(tail)
    this.lengths.setUint32(HEADER_BYTES + at * (this.capacity + LENGTH_BYTES), length, true)
    Atomics.store(this.counters, TAIL, (tail + 1) | 0)
    return Atomics.compareExchange(this.counters, ASLEEP, 1, 0) === 1
  }

  /** Writer: wakes the reader waiting in `sleep()`; how many waiters woke (0 or 1). */
  wake(): number {
    return Atomics.notify(this.counters, TAIL)
  }

  /** Reader: the oldest unread entry (valid until `consume()`), or null when there is none. */
  read(): Buffer | null {
    const head = Atomics.load(this.counters, HEAD)
    if (head === Atomics.load(this.counters, TAIL)) return null
    const at = this.offset(head)
    const length = this.lengths.getUint32(HEADER_BYTES + at * (this.capacity + LENGTH_BYTES), true)
    return this.views[at]!.subarray(0, length)
  }

  /** Reader: frees the slot `read()` returned. */
  consume(): void {
    Atomics.store(this.counters, HEAD, (Atomics.load(this.counters, HEAD) + 1) | 0)
  }

  /**
   * Reader: nothing left to read; asks the writer to wake it at its next
   * publish. Null when an entry is there already (read it now), else a
   * promise that settles at the next wake-up (the same one while it waits).
   */
  sleep(): Promise<unknown> | null {
    Atomics.store(this.counters, ASLEEP, 1)
    // Checked after the flag is up: a publish in between either is seen here or sees the flag.
    const tail = Atomics.load(this.counters, TAIL)
    if (tail !== Atomics.load(this.counters, HEAD)) return null
    if (this.waiting !== null) return this.waiting
    const wait = waitAsync(this.counters, TAIL, tail)
    if (!wait.async) return null
    const waiting = wait.value.then(() => {
      this.waiting = null
    })
    this.waiting = waiting
    return waiting
  }
}
