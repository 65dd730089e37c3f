/**
 * The home side of channels: for every channel homed on this node it holds
 * every message to the size limit (whatever path it came by: a child's
 * client, a peer on the internal link, the publisher), assigns sequence
 * numbers, keeps history bounded by count, age and bytes (the history
 * itself: roles/live/channel-history.ts), tracks presence, and sends each
 * event once to every interested node (a "sink": this node itself or a peer
 * on the internal link). Lives in the node's parent process; single-threaded,
 * so every channel's order is the order `publish` is called in.
 */

import { messageBytes } from '../../lib/live/message-size.js'
import { emptyHistory, gapAt, page, store, storeReplica, trim, type Catchup, type ChannelHistory, type ChannelSnapshot, type HistoryLimits, type LiveMessage, type ReplicaMessage } from './channel-history.js'
import { LiveError } from './errors.js'

export interface Member {
  readonly user: string
  readonly info?: Record<string, unknown> | undefined
}

/** What the home sends to interested nodes (`count`: a count-only channel's member count, when it changed). */
export type HubEvent =
  | ({ k: 'msg' } & LiveMessage)
  | { k: 'presence'; ch: string; joins: Member[]; leaves: string[] }
  | { k: 'count'; ch: string; count: number }

export interface Sink {
  readonly id: string
  send(event: HubEvent): void
}

/** A channel held here: its history (./channel-history.ts), and who is interested in it and present. */
interface Channel extends ChannelHistory {
  /** Last publish, subscription or presence change (ms); idle channels are forgotten only after the history age. */
  touched: number
  readonly sinks: Set<Sink>
  readonly members: Map<string, { info?: Record<string, unknown> | undefined; sinks: Set<string> }>
  /** Count-only presence (--live-presence-count-only): joins and leaves are not sent, the count is (coalesced). */
  readonly countOnly: boolean
  /** The count last sent to sinks (count-only channels). */
  countSent: number
}

export interface HubOptions extends HistoryLimits {
  /** Largest message accepted, in bytes of its JSON text (`--live-max-message`); larger ones are refused with 4004. */
  readonly maxMessageBytes: number
  /** Channels whose presence is count-only (--live-presence-count-only); none when absent. */
  readonly countOnly?: (ch: string) => boolean
  /** Clock (ms) for tests. */
  readonly now?: () => number
}

/** Presence answers list at most this many members (the count is always exact). */
export const PRESENCE_LIST_LIMIT = 1000

/** Forgotten channels whose last sequence is remembered (so a late resume is told `expired`, not `lost`); oldest forgotten first. */
const FORGOTTEN_MAX = 100_000

export class Hub {
  private readonly channels = new Map<string, Channel>()
  /** Channels forgotten while idle, and the last sequence each had. */
  private readonly forgotten = new Map<string, number>()
  /** Count-only channels whose membership changed since the last {@link flushCounts}. */
  private readonly countsChanged = new Set<string>()
  private readonly opts: HubOptions
  private readonly now: () => number

  constructor(opts: HubOptions) {
    this.opts = opts
    this.now = opts.now ?? Date.now
  }

  get size(): number {
    return this.channels.size
  }

  /**
   * A channel new to this home starts its sequence at a time-based base
   * (µs since the epoch), above anything an earlier home of the channel can
   * have assigned: a `since` from before the move is detectably not covered.
   */
  private channel(ch: string): Channel {
    let c = this.channels.get(ch)
    if (c) c.touched = this.now()
    else {
      const base = this.now() * 1000
      // A channel this home forgot (idle, its history all expired) starts again above its old sequence: all of that expired.
      const forgottenTo = this.forgotten.get(ch) ?? 0
      this.forgotten.delete(ch)
      c = { ...emptyHistory(base, base, forgottenTo, []), touched: this.now(), sinks: new Set(), members: new Map(),
        countOnly: this.opts.countOnly?.(ch) ?? false, countSent: 0,
      }
      this.channels.set(ch, c)
    }
    return c
  }

  /**
   * Numbers and stores one message and sends it to every sink; throws a
   * LiveError (4004, 4003) for what no channel takes. With a publish `id`
   * that names a message still in the history, nothing is stored or sent:
   * the answer is that message's sequence and time (a retried publish).
   */
  publish(ch: string, data: unknown, id?: string): { seq: number; ts: number } {
    const { msg } = this.append(ch, data, id)
    this.commit(ch, msg.seq)
    return { seq: msg.seq, ts: msg.ts }
  }

  /**
   * Numbers and stores one message without sending it (replication sends it
   * to the backup first, then {@link commit}s it). `fresh` is false for a
   * retried publish id: `msg` is the message it first stored.
   */
  append(ch: string, data: unknown, id?: string): { msg: LiveMessage; fresh: boolean } {
    const size = messageBytes(data)
    if (size === null) throw new LiveError('BAD_FIELD', 'data must be a JSON value')
    if (size > this.opts.maxMessageBytes) throw new LiveError('TOO_LARGE', `message of ${size} bytes exceeds --live-max-message (${this.opts.maxMessageBytes} bytes)`)
    const c = this.channel(ch)
    if (id !== undefined) {
      trim(c, this.opts, this.now)
      const earlier = c.published.get(id)
      if (earlier !== undefined) return { msg: earlier, fresh: false }
    }
    const msg: LiveMessage = { ch, seq: ++c.seq, ts: this.now(), data }
    store(c, msg, size, id, this.opts, this.now)
    c.unsent.push(msg)
    return { msg, fresh: true }
  }

  /** Sends the channel's stored messages up to `seq` to its sinks, in order: every replica holds them. */
  commit(ch: string, seq: number): void {
    const c = this.channels.get(ch)
    if (!c) return
    let sent = 0
    while (sent < c.unsent.length && c.unsent[sent]!.seq <= seq) {
      const event: HubEvent = { k: 'msg', ...c.unsent[sent]! }
      for (const sink of c.sinks) sink.send(event)
      sent++
    }
    if (sent > 0) c.unsent.splice(0, sent)
    if (seq > c.committed) c.committed = Math.min(seq, c.seq)
  }

  /** Whether this node holds the channel (history and sequence, as home or replica). */
  has(ch: string): boolean {
    return this.channels.has(ch)
  }

  /** The channel's last assigned and last committed sequences (undefined: not held). */
  positions(ch: string): { seq: number; committed: number } | undefined {
    const c = this.channels.get(ch)
    return c && { seq: c.seq, committed: c.committed }
  }

  /** Names of the channels held here. */
  channelNames(): string[] {
    return [...this.channels.keys()]
  }

  /**
   * The channel's whole state, uncommitted messages included (undefined: not
   * held). Its messages stop at about `budget` bytes (at least one goes): the
   * snapshot's `seq` is then the last one it carries, and `more` is true (the
   * rest follow as replica messages, {@link messagesAfter}), so no frame grows past the link's limit.
   */
  snapshot(ch: string, budget = Infinity): { snap: ChannelSnapshot; more: boolean } | undefined {
    const c = this.channels.get(ch)
    if (!c) return undefined
    trim(c, this.opts, this.now)
    const { messages, more } = page(c, c.head, budget)
    const seq = more ? messages.at(-1)!.seq : c.seq
    return { snap: { seq, base: c.base, forgottenTo: c.forgottenTo, trimmed: c.trimmed.map((r) => ({ ...r })), messages }, more }
  }

  /** The messages held after `after`, up to about `budget` bytes (at least one); `more`: there are later ones. */
  messagesAfter(ch: string, after: number, budget = Infinity): { messages: ReplicaMessage[]; more: boolean } {
    const c = this.channels.get(ch)
    if (!c || c.head >= c.history.length) return { messages: [], more: false }
    const first = c.history[c.head]!.seq
    return page(c, c.head + Math.max(0, after - first + 1), budget)
  }

  /**
   * Replaces the channel's history and sequence with `snap` (a replica being
   * filled, or a home taking over); its interest and members stay. All of it
   * counts as committed here: what was not is sent by nobody, read by resumes.
   */
  restore(ch: string, snap: ChannelSnapshot): void {
    const old = this.channels.get(ch)
    this.forgotten.delete(ch)
    const c: Channel = {
      ...emptyHistory(snap.seq, snap.base, snap.forgottenTo, snap.trimmed.map((r) => ({ ...r }))), touched: this.now(),
      sinks: old?.sinks ?? new Set(), members: old?.members ?? new Map(), countOnly: this.opts.countOnly?.(ch) ?? false, countSent: old?.countSent ?? 0,
    }
    this.channels.set(ch, c)
    for (const m of snap.messages) storeReplica(c, ch, m, this.opts, this.now)
  }

  /** A replica's next message: stored if it follows the last one held, else false (the replica needs the whole state again). */
  applyReplica(ch: string, m: ReplicaMessage): boolean {
    const c = this.channels.get(ch)
    if (!c || m.seq !== c.seq + 1) return false
    c.touched = this.now()
    c.seq = c.committed = m.seq
    storeReplica(c, ch, m, this.opts, this.now)
    // Nodes that subscribed here (their table names this node the home before its own does) get it as it is held.
    if (c.sinks.size > 0) this.emit(c, { k: 'msg', ch, seq: m.seq, ts: m.ts, data: m.data })
    return true
  }

  /** Forgets the channel entirely (this node no longer holds it: neither its home nor its backup). */
  drop(ch: string): void {
    this.channels.delete(ch)
  }

  /** What a client that last saw `since` missed (no `since`: nothing, recovered). Only committed messages are seen. */
  catchup(ch: string, since: number | undefined, limit = Infinity): Catchup {
    const c = this.channel(ch)
    trim(c, this.opts, this.now)
    const seq = c.committed
    if (since === undefined || since === seq) return { seq, recovered: true, messages: [] }
    const first = Math.min(c.head < c.history.length ? c.history[c.head]!.seq : seq + 1, seq + 1)
    if (since > seq) return { seq, recovered: false, gap: gapAt(c, since, first), messages: [] }
    // Past a gap, the messages still held after it follow as usual (docs/live-protocol.md, "Gaps").
    const gap = since < first - 1 ? gapAt(c, since, first) : undefined
    const messages: LiveMessage[] = []
    // Sequences are contiguous within one home's history, so the start is an index.
    for (let i = c.head + Math.max(since - first + 1, 0); i < c.history.length && messages.length < limit && c.history[i]!.seq <= seq; i++) messages.push(c.history[i]!)
    return gap === undefined ? { seq, recovered: true, messages } : { seq, recovered: false, gap, messages }
  }


  /** A history read: after `since`, or without it the latest `limit` messages the home still keeps. */
  history(ch: string, since: number | undefined, limit: number): Catchup {
    if (since !== undefined) return this.catchup(ch, since, limit)
    const c = this.channel(ch)
    trim(c, this.opts, this.now)
    let end = c.history.length
    while (end > c.head && c.history[end - 1]!.seq > c.committed) end--
    return { seq: c.committed, recovered: true, messages: c.history.slice(Math.max(c.head, end - limit), end) }
  }

  /** Registers `sink` for the channel's events and answers its catch-up in the same step (no gap, no overlap). */
  subscribe(sink: Sink, ch: string, since?: number): Catchup {
    const answer = this.catchup(ch, since)
    this.channel(ch).sinks.add(sink)
    return answer
  }

  unsubscribe(sink: Sink, ch: string): void {
    const c = this.channels.get(ch)
    if (!c) return
    c.sinks.delete(sink)
    this.forgetIfIdle(ch, c)
  }

  join(sink: Sink, ch: string, member: Member): void {
    const c = this.channel(ch)
    let m = c.members.get(member.user)
    if (!m) {
      m = { info: member.info, sinks: new Set() }
      c.members.set(member.user, m)
      this.presenceChanged(ch, c, [member], [])
    }
    m.sinks.add(sink.id)
  }

  leave(sink: Sink, ch: string, user: string): void {
    const c = this.channels.get(ch)
    const m = c?.members.get(user)
    if (!c || !m || !m.sinks.delete(sink.id) || m.sinks.size > 0) return
    c.members.delete(user)
    this.presenceChanged(ch, c, [], [user])
  }

  private presenceChanged(ch: string, c: Channel, joins: Member[], leaves: string[]): void {
    if (c.countOnly) this.countsChanged.add(ch)
    else this.emit(c, { k: 'presence', ch, joins, leaves })
  }

  /** Sends each count-only channel's member count to its sinks if it changed since last sent: one event per channel however many joins and leaves. */
  flushCounts(): void {
    for (const ch of this.countsChanged) {
      const c = this.channels.get(ch)
      if (c && c.members.size !== c.countSent) {
        c.countSent = c.members.size
        this.emit(c, { k: 'count', ch, count: c.countSent })
      }
    }
    this.countsChanged.clear()
  }

  /** Whether the channel's presence is count-only (its answers list no members). */
  isCountOnly(ch: string): boolean {
    return this.opts.countOnly?.(ch) ?? false
  }

  /** The member count and up to `limit` members (none for a count-only channel). */
  presence(ch: string, limit = PRESENCE_LIST_LIMIT): { count: number; members: Member[] } {
    const c = this.channels.get(ch)
    const members: Member[] = []
    if (this.isCountOnly(ch)) limit = 0
    for (const [user, m] of c?.members ?? []) {
      if (members.length >= limit) break
      members.push(m.info === undefined ? { user } : { user, info: m.info })
    }
    return { count: c?.members.size ?? 0, members }
  }

  /**
   * One page of the members for a node mirroring them (./presence-snapshot.ts): up to `limit` of the users after
   * `after` in code-unit order, and whether more follow. Pages in that order stay whole while members come and go
   * between them (the mirror applies the joins and leaves it hears meanwhile); none on a count-only channel.
   */
  presencePage(ch: string, after: string, limit = PRESENCE_LIST_LIMIT): { count: number; members: Member[]; more: boolean } {
    const c = this.channels.get(ch)
    if (!c || this.isCountOnly(ch)) return { count: c?.members.size ?? 0, members: [], more: false }
    const users = [...c.members.keys()].filter((user) => user > after).sort()
    const members = users.slice(0, limit).map((user) => {
      const info = c.members.get(user)!.info
      return info === undefined ? { user } : { user, info }
    })
    return { count: c.members.size, members, more: users.length > limit }
  }

  /** A sink went away (peer link closed): drop its interest and its members. */
  dropSink(sink: Sink): void {
    for (const [ch, c] of this.channels) {
      c.sinks.delete(sink)
      const leaves: string[] = []
      for (const [user, m] of c.members) {
        if (m.sinks.delete(sink.id) && m.sinks.size === 0) {
          c.members.delete(user)
          leaves.push(user)
        }
      }
      if (leaves.length > 0) this.presenceChanged(ch, c, [], leaves)
      this.forgetIfIdle(ch, c)
    }
  }

  /**
   * A node left the routing table (dead, or suspect for --heartbeat-timeout): its members leave every channel now,
   * not when its link times out. Its interest stays (a drained node still serves its clients through its grace);
   * a node that comes back joins its members again when it applies the table that lists it.
   */
  dropNodeMembers(nodeId: string): void {
    const prefix = `${nodeId}#`
    for (const [ch, c] of this.channels) {
      const leaves: string[] = []
      for (const [user, m] of c.members) {
        for (const id of m.sinks) if (id.startsWith(prefix)) m.sinks.delete(id)
        if (m.sinks.size === 0) {
          c.members.delete(user)
          leaves.push(user)
        }
      }
      if (leaves.length > 0) this.presenceChanged(ch, c, [], leaves)
    }
  }

  /** Drops channels with nothing left (no interest, members or history); their next message starts a new base. */
  sweep(): void {
    for (const [ch, c] of this.channels) {
      trim(c, this.opts, this.now)
      this.forgetIfIdle(ch, c)
    }
  }

  private forgetIfIdle(ch: string, c: Channel): void {
    if (c.sinks.size === 0 && c.members.size === 0 && c.head >= c.history.length && c.unsent.length === 0 && this.now() - c.touched > this.opts.historyAgeMs) {
      this.channels.delete(ch)
      this.forgotten.set(ch, c.committed)
      if (this.forgotten.size > FORGOTTEN_MAX) this.forgotten.delete(this.forgotten.keys().next().value!)
    }
  }

  private emit(c: Channel, event: HubEvent): void {
    for (const sink of c.sinks) sink.send(event)
  }
}
