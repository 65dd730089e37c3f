/**
 * `--request-timeout` for every request of an app child with one timer
 * instead of one each: every request gets the same timeout, so deadlines
 * come in the order requests arrive, and the list is that order, linked
 * through the requests themselves (nothing allocated per request; adding
 * and removing are O(1)). One timer runs for the oldest deadline; when it
 * fires, every entry whose deadline passed expires, and it is set again for
 * the next. An entry removed before its deadline leaves the timer as it is
 * (it fires, finds a later deadline at the head, and waits for that one).
 * A `setTimeout` and `clearTimeout` per request cost the child's main
 * thread about 1–4 µs each (docs/benchmarks.md, `bench/app-dispatch`).
 */

/** What an entry carries (the pool's Job): its deadline and its neighbours, owned by the list. */
export interface DeadlineEntry {
  deadline: number
  prev: DeadlineEntry | null
  next: DeadlineEntry | null
}

export class DeadlineList<T extends DeadlineEntry> {
  private head: T | null = null
  private tail: T | null = null
  private timer: NodeJS.Timeout | null = null
  /** When the timer fires (performance.now() time), while it runs. */
  private due = 0

  /** `expire` is told of each entry whose deadline passed, oldest first (it is out of the list by then). */
  constructor(private readonly timeoutMs: number, private readonly expire: (entry: T) => void, private readonly now: () => number = () => performance.now()) {}

  /** Whether `entry` is in the list. */
  has(entry: T): boolean {
    return entry.prev !== null || this.head === entry
  }

  /** Adds `entry` with a deadline of now + the timeout (after every entry in the list). */
  add(entry: T): void {
    entry.deadline = this.now() + this.timeoutMs
    entry.prev = this.tail
    entry.next = null
    if (this.tail === null) this.head = entry
    else this.tail.next = entry
    this.tail = entry
    if (this.timer === null) this.arm(entry.deadline)
  }

  /** Takes `entry` out (answered before its deadline); nothing when it is not in the list. */
  remove(entry: T): void {
    if (!this.has(entry)) return
    if (entry.prev === null) this.head = entry.next as T | null
    else entry.prev.next = entry.next
    if (entry.next === null) this.tail = entry.prev as T | null
    else entry.next.prev = entry.prev
    entry.prev = null
    entry.next = null
    if (this.head === null) this.stop()
  }

  /** Stops the timer (the pool is gone); the entries stay. */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  private arm(deadline: number): void {
    this.due = deadline
    this.timer = setTimeout(this.fire, Math.max(0, deadline - this.now()))
  }

  private readonly fire = (): void => {
    this.timer = null
    const now = this.now()
    for (let entry = this.head; entry !== null && entry.deadline <= now; entry = this.head) {
      this.remove(entry)
      this.expire(entry)
    }
    // `expire` may have added entries (and armed the timer for them).
    if (this.head !== null && (this.timer === null || this.due > this.head.deadline)) {
      this.stop()
      this.arm(this.head.deadline)
    }
  }
}
