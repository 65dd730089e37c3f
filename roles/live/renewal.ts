/**
 * A node renewing a channel at its home (after the home moved or its link
 * came back): the home registers the node and answers in one step, but its
 * next messages can be read together with that answer and handled before it
 * (one read, several frames; the answer's continuation waits for microtasks).
 * Relayed at once, a new home's first message reached clients before the
 * reset (`sub-ok` with `recovered: false`) that says the stream restarted
 * (issue #16). So the home's messages are held until its answer has been
 * handled, and subscriptions of this node's children wait for it too (their
 * answers would otherwise move the relayed position past what is held).
 */
import type { LiveMessage } from './channel-history.js'

export class Renewal {
  /** Messages from {@link home} read before its answer, in order. */
  readonly held: LiveMessage[]
  /** Settles when the renewal is over (answered, failed or superseded). */
  readonly done: Promise<void>
  private settle!: () => void

  /** `carried`: what an earlier renewal at the same home held (its answer will not be handled). */
  constructor(readonly home: string, carried: readonly LiveMessage[] = []) {
    this.held = [...carried]
    this.done = new Promise((resolve) => (this.settle = resolve))
  }

  finish(): void {
    this.settle()
  }
}
