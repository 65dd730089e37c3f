/**
 * The in-memory orders of the embedded task queue (seed/tasks-embedded.ts),
 * both over task seqs: a min-heap by time (delayed tasks, lease deadlines)
 * and a FIFO that can also take one at the front (the ready queue).
 */

/** A binary min-heap of [time, seq] pairs. */
export class TimeHeap {
  private readonly items: [number, number][] = []
  get size(): number {
    return this.items.length
  }
  peek(): [number, number] | undefined {
    return this.items[0]
  }
  push(item: [number, number]): void {
    const a = this.items
    a.push(item)
    for (let i = a.length - 1; i > 0;) {
      const up = (i - 1) >> 1
      if (a[up]![0] <= a[i]![0]) break
      ;[a[up], a[i]] = [a[i]!, a[up]!]
      i = up
    }
  }
  pop(): [number, number] | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      a[0] = last
      for (let i = 0; ;) {
        const l = 2 * i + 1
        const r = l + 1
        let min = i
        if (l < a.length && a[l]![0] < a[min]![0]) min = l
        if (r < a.length && a[r]![0] < a[min]![0]) min = r
        if (min === i) break
        ;[a[min], a[i]] = [a[i]!, a[min]!]
        i = min
      }
    }
    return top
  }
}

/** A FIFO of seqs that can also take one at the front (releases, retries, lost leases). */
export class Fifo {
  private items: number[] = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(seq: number): void {
    this.items.push(seq)
  }
  unshift(seq: number): void {
    if (this.head > 0) this.items[--this.head] = seq
    else this.items.unshift(seq)
  }
  shift(): number | undefined {
    if (this.head === this.items.length) return undefined
    const seq = this.items[this.head++]
    // Compact once the consumed part dominates.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return seq
  }
}
