/**
 * The messages that reach a Live child while subscriptions on a channel wait
 * for the parent's answer (roles/live/child.ts, `answered`): the answer was
 * read at the home earlier, so what came after it is sent from here. Bounded:
 * past `max` kept, the oldest go (what an answer needs is the newest), and
 * an answer that needed one of them says so with a gap of cause `dropped`
 * instead of a silent jump in the sequence.
 */
import type { Catchup, LiveMessage } from './channel-history.js'

export class RecentMessages {
  private kept: LiveMessage[] = []
  /** The last seq pushed out (0: none). */
  private droppedTo = 0

  /** Keeps at least the last `max` messages (up to twice that between trims). */
  constructor(private readonly max: number) {}

  push(m: LiveMessage): void {
    this.kept.push(m)
    if (this.kept.length < 2 * this.max) return
    this.droppedTo = this.kept[this.max - 1]!.seq
    this.kept.splice(0, this.max)
  }

  clear(): void {
    this.kept = []
    this.droppedTo = 0
  }

  /**
   * The answer with the messages that came after it, each seq once and in
   * order. When some of those were pushed out: a resume (`resumed`) is not
   * recovered, with a gap up to the last one gone (its cause the answer's own
   * gap's when it had one, else `dropped`); a subscription from now starts
   * after them, having missed nothing it asked for.
   */
  merge(answer: Catchup, resumed: boolean): Catchup {
    const upTo = Math.max(answer.seq, answer.messages.at(-1)?.seq ?? 0)
    const later = this.kept.filter((m) => m.seq > upTo)
    if (this.droppedTo <= upTo) return later.length === 0 ? answer : { ...answer, messages: [...answer.messages, ...later] }
    if (!resumed) return { ...answer, seq: this.droppedTo, messages: later }
    const gap = answer.gap === undefined
      ? { from: upTo + 1, to: this.droppedTo, cause: 'dropped' as const }
      : { from: answer.gap.from, to: this.droppedTo, cause: answer.gap.cause }
    return { seq: answer.seq, recovered: false, gap, messages: answer.gap === undefined ? [...answer.messages, ...later] : later }
  }
}
