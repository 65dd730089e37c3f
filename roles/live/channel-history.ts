/**
 * One channel's history as its holder keeps it (home or replica): messages
 * numbered from a base, bounded by count, age and bytes, the runs of trim
 * causes that explain a gap, publish ids for retried publishes, and the
 * pages a snapshot or a replica fill carries. Plain functions over a
 * {@link ChannelHistory} record; the hub (roles/live/hub.ts) owns the records.
 */

import { messageBytes } from '../../lib/live/message-size.js'

/** One message as stored and sent. */
export interface LiveMessage {
  readonly ch: string
  readonly seq: number
  readonly ts: number
  readonly data: unknown
}

/**
 * Why messages a client asked for are gone (docs/live-protocol.md, "Gaps"):
 * older than --live-history-age, pushed out by --live-history-size or
 * --live-history-bytes, never held by this home (the channel's earlier
 * home restarted, died or moved), or pushed out of what a Live child keeps
 * for a subscription waiting for its answer (roles/live/recent-messages.ts).
 */
export type GapCause = 'expired' | 'overflow' | 'lost' | 'dropped'

/** The sequences a resume cannot get back: `from`..`to` inclusive, and why (the cause of `from`, the first one missing). */
export interface Gap {
  readonly from: number
  readonly to: number
  readonly cause: GapCause
}

/** The `gap` field of an answer that has one (frames and JSON bodies leave it out otherwise). */
export const gapOf = (answer: { readonly gap?: Gap | undefined }): { gap?: Gap } => (answer.gap === undefined ? {} : { gap: answer.gap })

/** Answer to a subscription or a history read. */
export interface Catchup {
  /** The channel's current (last assigned) sequence. */
  seq: number
  /** False when `since` is not covered by history: the client missed messages it cannot get back. */
  recovered: boolean
  /** With `recovered: false` after a `since`: what is missing and why. */
  gap?: Gap
  /** Messages after `since` (after the gap when not recovered: the ones still held), up to `seq`, in order; empty with no `since`. */
  messages: LiveMessage[]
}

/**
 * A channel's whole state as one holder sends it to another (replication,
 * roles/live/replication.ts): a backup being filled, or a new home taking
 * over. Every message held goes, with its publish id.
 */
export interface ChannelSnapshot {
  readonly seq: number
  readonly base: number
  readonly forgottenTo: number
  readonly trimmed: readonly { to: number; cause: 'expired' | 'overflow' }[]
  readonly messages: readonly ReplicaMessage[]
}

/** One message as a replica receives it: with its publish id, if any. */
export interface ReplicaMessage {
  readonly seq: number
  readonly ts: number
  readonly data: unknown
  readonly id?: string
}

/** A channel's history and sequence: the part of a hub channel that a replica copies (the hub adds interest and members). */
export interface ChannelHistory {
  seq: number
  /**
   * The last sequence every replica holds (--live-replicas): what subscribers,
   * catch-ups and history reads see. Messages above it are stored, not yet sent.
   */
  committed: number
  /** Messages stored above `committed`, in order: sent to sinks when committed. */
  unsent: LiveMessage[]
  /** The sequence the channel started at on this home: what is at or below it was never here. */
  readonly base: number
  /** What this home's earlier life of the channel (forgotten while idle) had numbered up to: all of it expired. */
  readonly forgottenTo: number
  /** Why trimmed messages went, as runs of one cause (oldest first, the last {@link TRIM_RUNS} kept). */
  readonly trimmed: { to: number; cause: 'expired' | 'overflow' }[]
  history: LiveMessage[]
  /** The size of each message in `history` (same index), as {@link messageBytes} measured it. */
  sizes: number[]
  /** The publish id of each message in `history` (same index; null: none given). */
  ids: (string | null)[]
  /** Publish ids of the messages kept, and the message each named: a retried publish is answered with it. */
  readonly published: Map<string, LiveMessage>
  /** Index of the oldest kept message in `history` (a queue without O(n) shifts). */
  head: number
  /** Bytes of the messages kept (from `head` on). */
  bytes: number
}

/** The bounds a history is kept to (the hub's options carry them). */
export interface HistoryLimits {
  readonly historySize: number
  readonly historyAgeMs: number
  /** Bytes of messages one channel's history keeps at most (`--live-history-bytes`); the oldest go first. */
  readonly historyBytes: number
}

/** Runs of one trim cause kept per channel: a resume from further back is told the oldest run's cause. */
const TRIM_RUNS = 32

/** An empty history: its sequence at `seq` (nothing committed above it), what was at or below `base` never held here. */
export function emptyHistory(seq: number, base: number, forgottenTo: number, trimmed: { to: number; cause: 'expired' | 'overflow' }[]): ChannelHistory {
  return { seq, committed: seq, unsent: [], base, forgottenTo, trimmed, history: [], sizes: [], ids: [], published: new Map(), head: 0, bytes: 0 }
}

function trimmedBy(c: ChannelHistory, seq: number, cause: 'expired' | 'overflow'): void {
  const last = c.trimmed.at(-1)
  if (last?.cause === cause) last.to = seq
  else {
    c.trimmed.push({ to: seq, cause })
    if (c.trimmed.length > TRIM_RUNS) c.trimmed.shift()
  }
}

/** Drops the messages past the history's age, count or bytes, oldest first, and remembers why. */
export function trim(c: ChannelHistory, limits: HistoryLimits, now: () => number): void {
  const oldest = now() - limits.historyAgeMs
  while (c.head < c.history.length) {
    const msg = c.history[c.head]!
    if (msg.ts < oldest) trimmedBy(c, msg.seq, 'expired')
    else if (c.history.length - c.head > limits.historySize || c.bytes > limits.historyBytes) trimmedBy(c, msg.seq, 'overflow')
    else break
    c.bytes -= c.sizes[c.head]!
    const id = c.ids[c.head]
    if (id != null) c.published.delete(id)
    c.head++
  }
  if (c.head > 1024 && c.head * 2 > c.history.length) {
    c.history = c.history.slice(c.head)
    c.sizes = c.sizes.slice(c.head)
    c.ids = c.ids.slice(c.head)
    c.head = 0
  }
}

/** Keeps one numbered message (`size`: its {@link messageBytes}), with its publish id if any, then trims. */
export function store(c: ChannelHistory, msg: LiveMessage, size: number, id: string | undefined, limits: HistoryLimits, now: () => number): void {
  if (limits.historySize > 0 && limits.historyBytes > 0) {
    c.history.push(msg)
    c.sizes.push(size)
    c.ids.push(id ?? null)
    if (id !== undefined) c.published.set(id, msg)
    c.bytes += size
  } else trimmedBy(c, msg.seq, 'overflow')
  trim(c, limits, now)
}

/** The messages held from index `from` on, up to about `budget` bytes (at least one); `more`: there are later ones. */
export function page(c: ChannelHistory, from: number, budget: number): { messages: ReplicaMessage[]; more: boolean } {
  const messages: ReplicaMessage[] = []
  let bytes = 0
  let i = from
  for (; i < c.history.length; i++) {
    if (messages.length > 0 && bytes + c.sizes[i]! > budget) break
    bytes += c.sizes[i]!
    const m = c.history[i]!
    const id = c.ids[i]
    messages.push(id == null ? { seq: m.seq, ts: m.ts, data: m.data } : { seq: m.seq, ts: m.ts, data: m.data, id })
  }
  return { messages, more: i < c.history.length }
}

/**
 * What a client at `since` cannot get back: `since + 1` up to the first
 * message kept. A `since` above the sequence (an earlier home's, whose
 * clock ran ahead of this one's) has nothing here to compare with: the
 * gap is `since + 1` to `since` (unknown length), lost.
 */
export function gapAt(c: ChannelHistory, since: number, first: number): Gap {
  if (since > c.committed) return { from: since + 1, to: since, cause: 'lost' }
  const from = since + 1
  const cause: GapCause = from <= c.base ? (from <= c.forgottenTo ? 'expired' : 'lost') : (c.trimmed.find((run) => run.to >= from)?.cause ?? 'expired')
  return { from, to: first - 1, cause }
}

/** Stores a replica's message (`m`), measured here; it is committed as it arrives. */
export function storeReplica(c: ChannelHistory, ch: string, m: ReplicaMessage, limits: HistoryLimits, now: () => number): void {
  store(c, { ch, seq: m.seq, ts: m.ts, data: m.data }, messageBytes(m.data) ?? 0, m.id, limits, now)
}
