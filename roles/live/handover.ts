/**
 * Handing a channel over (--live-replicas 2, docs/live-protocol.md,
 * "Replication"): a node that is no longer one of a channel's two holders
 * (drained and taken out of the table, stopping, or moved down the order by a
 * node that joined) sends the channel's whole state to the channel's home
 * before it forgets it (`hand` on the internal link: the state, then the
 * messages that did not fit, in order). The home takes it when it does not
 * hold the channel yet and ignores it otherwise. Without it a rolling restart
 * lost channels: a node that had just joined as their home had not filled them
 * yet when the node that held them was drained next.
 *
 * A home that finds a channel nowhere while a node that left lately may still
 * hand it over waits a little for it (roles/live/replication.ts). The leaver
 * says when it has handed over everything (`handed`, once its handovers were
 * answered), so the homes stop waiting for it at once: a new channel is not
 * held up for seconds after every drain.
 */
import type { Logger } from '../../lib/core/log.js'
import type { ChannelSnapshot, ReplicaMessage } from './channel-history.js'
import { LiveError } from './errors.js'
import type { Hub } from './hub.js'
import { isFailure } from './messages.js'
import type { Owners } from './replication.js'

export interface HandoverOptions {
  readonly hub: Hub
  readonly self: string
  readonly log: Logger
  /** Bytes of messages one frame carries at most (as replication's). */
  readonly budget: number
  owners(ch: string): Owners
  version(): number
  request(node: string, op: 'hand' | 'handed', body: Record<string, unknown>): Promise<unknown>
  /** A channel taken over whole from a holder that left: the home sends it to its backup. */
  taken(ch: string): void
}

/** A node that left is waited for this long at most, whether or not it says it handed everything over. */
const LEAVER_MS = 15_000

export class Handover {
  /** Channels this node is handing over now. */
  private readonly sending = new Map<string, Promise<void>>()
  /** Channels taken from a hand whose later messages are still coming, by sender. */
  private readonly from = new Map<string, string>()
  private readonly waiters = new Map<string, Set<() => void>>()
  /** Channels taken over from a leaving holder (espra_live_handed_over_channels). */
  taken = 0
  /** Nodes that left the table lately and may still hand channels over: when they left. */
  private readonly leavers = new Map<string, number>()
  /** Nodes that said they handed everything over: when. */
  private readonly handedAt = new Map<string, number>()
  private readonly o: HandoverOptions

  constructor(opts: HandoverOptions) {
    this.o = opts
  }

  /** Whether the channel is being handed over from here. */
  busy(ch: string): boolean {
    return this.sending.has(ch)
  }

  /** Sends the channel's whole state to `to` (in order, pipelined); resolves once every frame was answered, or failed. */
  send(ch: string, to: string): Promise<void> {
    let p = this.sending.get(ch)
    if (p) return p
    p = this.transfer(ch, to).finally(() => this.sending.delete(ch))
    this.sending.set(ch, p)
    return p
  }

  private async transfer(ch: string, to: string): Promise<void> {
    const taken = this.o.hub.snapshot(ch, this.o.budget)
    if (!taken) return
    const version = this.o.version()
    const rest: ReplicaMessage[] = taken.more ? this.o.hub.messagesAfter(ch, taken.snap.seq).messages : []
    const frames: Record<string, unknown>[] = [{ ch, version, snap: taken.snap, last: rest.length === 0 }, ...rest.map((msg, i) => ({ ch, version, msg, last: i === rest.length - 1 }))]
    try {
      const answers = await Promise.all(frames.map((body) => this.o.request(to, 'hand', body)))
      const refused = answers.find(isFailure) as { err: { message: string }; home?: string } | undefined
      if (refused) {
        this.o.log.warn({ ch, to, home: refused.home, err: refused.err.message }, 'live: a channel\'s new home refused its handover')
        return
      }
      this.o.log.info({ ch, to, seq: this.o.hub.positions(ch)?.seq, messages: taken.snap.messages.length + rest.length, held: (answers[0] as { held?: boolean }).held === true }, 'live: handed a channel over to its new home')
    } catch (err) {
      this.o.log.warn({ ch, to, err: (err as Error).message }, 'live: could not hand a channel over to its new home')
    }
  }

  /**
   * A `hand` from a holder that left: the state (taken when this node does
   * not hold the channel), then the messages that did not fit. Refused, like
   * `repl`, when this node's table is not older than the sender's and names
   * another home.
   */
  onHand(from: string, body: Record<string, unknown>): unknown {
    const ch = body['ch'] as string
    const owners = this.o.owners(ch)
    const version = this.o.version()
    if (owners.home !== this.o.self && version >= (body['version'] as number)) {
      return { err: { code: new LiveError('MOVED').code, message: `${this.o.self} is not the home of ${ch} here (routing version ${version})` }, version, home: owners.home }
    }
    const hub = this.o.hub
    const snap = body['snap'] as ChannelSnapshot | undefined
    const last = body['last'] === true
    if (snap !== undefined) {
      if (hub.has(ch)) return { held: true, seq: hub.positions(ch)!.seq }
      hub.restore(ch, snap)
      this.o.log.info({ ch, from, seq: snap.seq, messages: snap.messages.length }, 'live: took a channel over from a holder that left')
      this.taken++
      for (const wake of this.waiters.get(ch) ?? []) wake()
      if (last) this.o.taken(ch)
      else this.from.set(ch, from)
      return { seq: snap.seq }
    }
    const msg = body['msg'] as ReplicaMessage
    if (this.from.get(ch) !== from) return { held: true }
    if (!hub.applyReplica(ch, msg)) {
      this.from.delete(ch)
      return { held: true }
    }
    if (last) {
      this.from.delete(ch)
      this.o.taken(ch)
    }
    return { seq: msg.seq }
  }

  /**
   * Resolves once a handover of the channel into this node is whole (at once when none is under way), or after `ms`
   * (its sender went quiet: what came is kept). Until then the home numbers nothing: the rest would not follow.
   */
  async whole(ch: string, ms: number): Promise<void> {
    const until = Date.now() + ms
    while (this.from.has(ch) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20))
    this.from.delete(ch)
  }

  /** A node left the routing table; `mayHand`: drained or stopping with its link up, it may hand channels over for a while. */
  nodeLeft(node: string, mayHand: boolean): void {
    this.o.log.info({ node, handover: mayHand }, 'live: a node left the routing table')
    if (mayHand && Date.now() - (this.handedAt.get(node) ?? 0) >= LEAVER_MS) this.leavers.set(node, Date.now())
  }

  /** Whether a node that left lately has not yet said it handed everything over. */
  expecting(): boolean {
    for (const [node, at] of this.leavers) if (Date.now() - at >= LEAVER_MS) this.leavers.delete(node)
    return this.leavers.size > 0
  }

  /** `handed` from a node that left: nothing more comes from it; homes waiting only for it go on. */
  onHanded(from: string): Record<string, never> {
    this.o.log.info({ from, waitedFor: this.leavers.has(from) }, 'live: a node that left has handed all its channels over')
    this.handedAt.set(from, Date.now())
    for (const [node, at] of this.handedAt) if (Date.now() - at >= LEAVER_MS) this.handedAt.delete(node)
    this.leavers.delete(from)
    if (!this.expecting()) for (const set of this.waiters.values()) for (const wake of [...set]) wake()
    return {}
  }

  /** Once every handover from here was answered: tells `nodes` that nothing more comes (best effort). */
  async announce(nodes: readonly string[]): Promise<void> {
    while (this.sending.size > 0) await Promise.all([...this.sending.values()])
    await Promise.all(nodes.filter((n) => n !== this.o.self).map((n) => this.o.request(n, 'handed', {}).catch(() => undefined)))
  }

  /** Resolves when a hand of the channel has been taken, or after `ms`. */
  wait(ch: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(ch)
      if (!set) this.waiters.set(ch, (set = new Set()))
      const done = (): void => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0) this.waiters.delete(ch)
        resolve()
      }
      const timer = setTimeout(done, ms)
      timer.unref()
      set.add(done)
    })
  }

  /**
   * A stopping node hands every channel it holds to the home it has once this node is gone (`successor`, null: no
   * other node), then tells `nodes` it is done; resolves once every handover was answered, or after `timeoutMs`.
   */
  async handOff(successor: (ch: string) => string | null, nodes: readonly string[], timeoutMs: number): Promise<void> {
    for (const ch of this.o.hub.channelNames()) {
      const to = successor(ch)
      if (to !== null) void this.send(ch, to)
    }
    await Promise.race([this.announce(nodes), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())])
  }
}
