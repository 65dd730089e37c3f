/**
 * Replicated history (--live-replicas 2, docs/live-protocol.md, "Replication"):
 * each channel is held by its home and its backup, the first two Live nodes
 * of its rendezvous order. The home numbers a publish, sends it to the backup
 * (`repl`, pipelined in order) and commits it once the backup holds it. When
 * the home dies the backup holds the whole history and goes on with the same
 * sequence. The home pushes the state to a new backup; a home that does not
 * hold a channel pulls it from its backup (`fill`) before it serves it; a node
 * that stops holding it hands it to the home (./handover.ts).
 *
 * Fencing: a node refuses `repl` from a node that is not the channel's home
 * in its routing table, and says which version that table has; a home told by
 * a newer table that it is not the home forgets the channel and answers its
 * publishers MOVED (5031, retried at the new home). So a home that was stopped
 * (SIGSTOP) and resumed cannot acknowledge a publish for a channel it lost.
 */
import type { Logger } from '../../lib/core/log.js'
import { LiveError } from './errors.js'
import type { ChannelSnapshot, LiveMessage, ReplicaMessage } from './channel-history.js'
import { Handover } from './handover.js'
import type { Hub } from './hub.js'
import { isFailure } from './messages.js'

/** A channel's two holders under this node's routing table; backup null: none (one node, or --live-replicas 1). */
export interface Owners {
  readonly home: string
  readonly backup: string | null
}

export interface ReplicationOptions {
  readonly hub: Hub
  readonly self: string
  readonly log: Logger
  /** The channel's holders under the current table. */
  owners(ch: string): Owners
  /** Bytes of messages one state transfer frame carries at most (well under --max-frame); the rest follow one by one or page by page. */
  readonly budget: number
  /** The current routing table's version (0: none yet). */
  version(): number
  /**
   * Resolves once this node has a routing table (or has waited long enough for one: a node with no seed never gets
   * one). Until then it cannot know whether a channel asked of it has another holder to fill it from.
   */
  firstTable(): Promise<void>
  /** A request to another Live node over the internal link; rejects when the link fails or times out. */
  request(node: string, op: 'repl' | 'fill' | 'hand' | 'handed', body: Record<string, unknown>): Promise<unknown>
}

/** What a node answers a `repl` or `fill` it refuses (besides the error): its table's version and the channel's home in it. */
interface Refusal {
  readonly err: { code: number; message: string }
  readonly version?: number
  readonly home?: string
}

interface Waiter {
  readonly seq: number
  readonly ts: number
  resolve(answer: { seq: number; ts: number }): void
  reject(err: Error): void
}

interface ChannelState {
  /** The backup the channel's state was last sent to (null: none yet, or it must be sent again). */
  backup: string | null
  /** Counts full sends: an answer to an earlier one does not start another. */
  generation: number
  /** Publishes waiting for their commit, in sequence order. */
  waiters: Waiter[]
  /** A fill from the backup in flight. */
  filling: Promise<void> | null
  /** After answering a newer home's fill: this node is not the home before its table reaches this version. */
  fencedBelow: number
  /** A retry of the full send scheduled. */
  retry: NodeJS.Timeout | null
}

const NEED_STATE = 'needs the channel state'
const RETRY_MS = 100
/** How long a home that found a channel nowhere waits for its handover while a node that left lately has not said it handed everything over. */
const HAND_WAIT_MS = 3000

export class Replication {
  private readonly states = new Map<string, ChannelState>()
  /** Messages acknowledged by a backup (espra_live_replicated_messages). */
  replicated = 0
  private readonly o: ReplicationOptions
  readonly handover: Handover

  constructor(opts: ReplicationOptions) {
    this.o = opts
    this.handover = new Handover({
      hub: opts.hub, self: opts.self, log: opts.log, budget: opts.budget, owners: opts.owners, version: opts.version,
      request: (node, op, body) => opts.request(node, op, body),
      taken: (ch) => {
        const s = this.state(ch)
        s.backup = null
        this.sendAll(ch)
      },
    })
  }

  private state(ch: string): ChannelState {
    let s = this.states.get(ch)
    if (!s) this.states.set(ch, (s = { backup: null, generation: 0, waiters: [], filling: null, fencedBelow: 0, retry: null }))
    return s
  }

  /** Publishes waiting for a backup (espra_live_replication_pending). */
  get pending(): number {
    let n = 0
    for (const s of this.states.values()) n += s.waiters.length
    return n
  }

  /** Throws MOVED unless this node is the channel's home. */
  private assertHome(ch: string): Owners {
    const owners = this.o.owners(ch)
    if (owners.home !== this.o.self || this.o.version() < (this.states.get(ch)?.fencedBelow ?? 0)) throw new LiveError('MOVED', `this node is not the home of ${ch}; retry`)
    return owners
  }

  /**
   * Resolves once this node, the channel's home, holds it: at once when it
   * does or has no backup; otherwise after its backup sent the channel's
   * state (or said it has none: the channel starts here).
   */
  async ready(ch: string): Promise<void> {
    await this.handover.whole(ch, HAND_WAIT_MS)
    if (this.o.hub.has(ch)) return
    if (this.o.version() === 0) await this.o.firstTable()
    if (this.o.hub.has(ch)) return
    const owners = this.assertHome(ch)
    const s = this.state(ch)
    s.filling ??= this.take(ch, owners.backup).finally(() => (s.filling = null))
    await s.filling
  }

  /**
   * Fills the channel from its backup; found nowhere while a node left the table lately, it waits a little for that
   * node's handover (it may have been the only holder: a rolling restart drains the next node right after one joined).
   */
  private async take(ch: string, backup: string | null): Promise<void> {
    if (backup !== null) await this.fill(ch, backup)
    if (!this.o.hub.has(ch) && this.handover.expecting()) await this.handover.wait(ch, HAND_WAIT_MS)
  }

  private async fill(ch: string, backup: string): Promise<void> {
    let snap: ChannelSnapshot | undefined
    const rest: ReplicaMessage[] = []
    try {
      let page = await this.fillPage(ch, backup, undefined)
      snap = page.snap
      while (snap && page.more) {
        page = await this.fillPage(ch, backup, rest.at(-1)?.seq ?? snap.seq)
        if (!page.messages?.length) break
        rest.push(...page.messages)
      }
    } catch (err) {
      if (err instanceof LiveError) throw err
      throw new LiveError('UNAVAILABLE', `the backup of ${ch} (${backup}) could not send its history: ${(err as Error).message}`)
    }
    if (!snap || this.o.hub.has(ch)) return
    this.o.hub.restore(ch, snap)
    for (const m of rest) {
      if (this.o.hub.applyReplica(ch, m)) continue
      this.o.hub.drop(ch)
      throw new LiveError('UNAVAILABLE', `the history of ${ch} from ${backup} changed while it was sent; retry`)
    }
    this.o.log.info({ ch, from: backup, seq: this.o.hub.positions(ch)!.seq, messages: snap.messages.length + rest.length }, 'live: took a channel over with its history')
  }

  /** One page of a `fill`: the state and its first messages, then (`after`) the messages after a seq. */
  private async fillPage(ch: string, backup: string, after: number | undefined): Promise<{ snap?: ChannelSnapshot; messages?: ReplicaMessage[]; more?: boolean }> {
    const answer = await this.o.request(backup, 'fill', after === undefined ? { ch, version: this.o.version() } : { ch, version: this.o.version(), after })
    if (isFailure(answer)) {
      const refusal = answer as Refusal
      if ((refusal.version ?? 0) > this.o.version()) this.abandon(ch)
      throw new LiveError('MOVED', `${backup} refused to fill ${ch}: ${refusal.err.message}`)
    }
    return answer as { snap?: ChannelSnapshot; messages?: ReplicaMessage[]; more?: boolean }
  }

  /** A publish at the channel's home: answered once every replica holds it. */
  async publish(ch: string, data: unknown, id?: string): Promise<{ seq: number; ts: number }> {
    await this.ready(ch)
    const owners = this.assertHome(ch)
    const hub = this.o.hub
    const { msg, fresh } = hub.append(ch, data, id)
    if (owners.backup === null) {
      hub.commit(ch, msg.seq)
      this.settle(ch)
      return { seq: msg.seq, ts: msg.ts }
    }
    if (msg.seq <= hub.positions(ch)!.committed) return { seq: msg.seq, ts: msg.ts }
    const s = this.state(ch)
    const answer = new Promise<{ seq: number; ts: number }>((resolve, reject) => s.waiters.push({ seq: msg.seq, ts: msg.ts, resolve, reject }))
    if (fresh) {
      if (s.backup === owners.backup) this.sendOne(ch, owners.backup, s.generation, msg, id)
      else this.sendAll(ch)
    }
    return answer
  }

  /** Sends the channel's whole state to its backup, then (on the same link, in order) each later message. */
  private sendAll(ch: string): void {
    const s = this.state(ch)
    if (s.retry) clearTimeout(s.retry)
    s.retry = null
    const owners = this.o.owners(ch)
    const taken = this.o.hub.snapshot(ch, this.o.budget)
    if (owners.home !== this.o.self || !taken) return
    const { snap } = taken
    if (owners.backup === null) {
      this.o.hub.commit(ch, snap.seq)
      return this.settle(ch)
    }
    const backup = owners.backup
    const generation = ++s.generation
    s.backup = backup
    this.o.request(backup, 'repl', { ch, version: this.o.version(), snap }).then(
      (answer) => this.answered(ch, backup, generation, snap.seq, answer),
      (err: unknown) => this.failed(ch, backup, generation, err),
    )
    // What did not fit in the first frame follows message by message, on the same link, in order.
    if (taken.more) for (const m of this.o.hub.messagesAfter(ch, snap.seq).messages) this.sendReplica(ch, backup, generation, m)
  }

  private sendOne(ch: string, backup: string, generation: number, msg: LiveMessage, id: string | undefined): void {
    this.sendReplica(ch, backup, generation, id === undefined ? { seq: msg.seq, ts: msg.ts, data: msg.data } : { seq: msg.seq, ts: msg.ts, data: msg.data, id })
  }

  private sendReplica(ch: string, backup: string, generation: number, m: ReplicaMessage): void {
    this.o.request(backup, 'repl', { ch, version: this.o.version(), msg: m }).then(
      (answer) => this.answered(ch, backup, generation, m.seq, answer),
      (err: unknown) => this.failed(ch, backup, generation, err),
    )
  }

  private answered(ch: string, backup: string, generation: number, seq: number, answer: unknown): void {
    const s = this.states.get(ch)
    if (!s || s.generation !== generation) return
    if (!isFailure(answer)) {
      if (s.backup !== backup || this.o.owners(ch).backup !== backup || this.o.owners(ch).home !== this.o.self) return
      const before = this.o.hub.positions(ch)?.committed ?? seq
      this.o.hub.commit(ch, seq)
      this.replicated += Math.max(0, seq - before)
      return this.settle(ch)
    }
    const refusal = answer as Refusal
    if (refusal.err.message === NEED_STATE) {
      s.backup = null
      return this.sendAll(ch)
    }
    if (refusal.home !== this.o.self && (refusal.version ?? 0) > this.o.version()) {
      // A newer table gives the channel another home: this one was stopped or cut off meanwhile (fencing).
      this.o.log.warn({ ch, backup, version: refusal.version, home: refusal.home }, 'live: a newer routing table gives this channel another home; forgetting it here')
      return this.abandon(ch)
    }
    // The backup's table is older than this node's: send everything again once it has caught up.
    this.retryLater(ch, s)
  }

  private failed(ch: string, backup: string, generation: number, err: unknown): void {
    const s = this.states.get(ch)
    if (!s || s.generation !== generation) return
    this.o.log.debug({ ch, backup, err: (err as Error).message }, 'live: replication to the backup failed; sending the channel again')
    if (this.o.owners(ch).home !== this.o.self) return this.rejectAll(ch, new LiveError('MOVED', `this node is no longer the home of ${ch}; retry`))
    this.retryLater(ch, s)
  }

  private retryLater(ch: string, s: ChannelState): void {
    s.backup = null
    s.generation++
    if (s.retry || s.waiters.length === 0) return
    s.retry = setTimeout(() => {
      s.retry = null
      if (s.waiters.length > 0) this.sendAll(ch)
    }, RETRY_MS)
    s.retry.unref()
  }

  /** Answers the publishes the channel's commit now covers. */
  private settle(ch: string): void {
    const s = this.states.get(ch)
    const committed = this.o.hub.positions(ch)?.committed
    if (!s || committed === undefined) return
    let n = 0
    while (n < s.waiters.length && s.waiters[n]!.seq <= committed) {
      const w = s.waiters[n++]!
      w.resolve({ seq: w.seq, ts: w.ts })
    }
    if (n > 0) s.waiters.splice(0, n)
  }

  private rejectAll(ch: string, err: Error): void {
    const s = this.states.get(ch)
    if (!s) return
    for (const w of s.waiters.splice(0)) w.reject(err)
  }

  /** This node no longer holds the channel: its waiting publishes are answered MOVED and its state goes. */
  private abandon(ch: string): void {
    this.rejectAll(ch, new LiveError('MOVED', `this node is no longer the home of ${ch}; retry`))
    const s = this.states.get(ch)
    if (s?.retry) clearTimeout(s.retry)
    this.states.delete(ch)
    this.o.hub.drop(ch)
  }

  /**
   * After a new routing table: channels this node is the home of are sent
   * to a new backup (or committed, when no backup is left); channels it is
   * neither home nor backup of are forgotten.
   */
  onTable(): void {
    for (const ch of this.o.hub.channelNames()) {
      const owners = this.o.owners(ch)
      if (owners.home === this.o.self) {
        const s = this.state(ch)
        if (s.backup !== owners.backup || owners.backup === null) {
          s.backup = null
          this.sendAll(ch)
        }
      } else if (owners.backup === this.o.self) {
        // Demoted (a node joined ahead of this one, and filled from here): a publish in flight may or may not be in
        // what the new home took, so it is answered MOVED (its retry with a publish id is safe). The history stays: a replica.
        this.rejectAll(ch, new LiveError('MOVED', `this node is no longer the home of ${ch}; retry`))
        const s = this.states.get(ch)
        if (s) s.generation++
      } else this.leave(ch, owners.home)
    }
    for (const [ch, s] of this.states) if (!this.o.hub.has(ch) && s.waiters.length === 0 && !s.filling) this.states.delete(ch)
  }

  /**
   * Neither home nor backup any more: publishes waiting here are answered MOVED, and the channel is handed to its
   * home (which takes it if it does not hold it yet) before this node forgets it.
   */
  private leave(ch: string, home: string): void {
    if (this.handover.busy(ch)) return
    this.rejectAll(ch, new LiveError('MOVED', `this node is no longer the home of ${ch}; retry`))
    const s = this.states.get(ch)
    if (s?.retry) clearTimeout(s.retry)
    this.states.delete(ch)
    if (home === this.o.self) return this.o.hub.drop(ch)
    void this.handover.send(ch, home).then(() => {
      const owners = this.o.owners(ch)
      if (owners.home !== this.o.self && owners.backup !== this.o.self) this.o.hub.drop(ch)
    })
  }

  /** The `repl` request from the channel's home: its whole state or its next message. */
  onRepl(from: string, body: Record<string, unknown>): unknown {
    const ch = body['ch'] as string
    const refusal = this.refuseUnlessHome(ch, from, true)
    if (refusal) return refusal
    const snap = body['snap'] as ChannelSnapshot | undefined
    if (snap !== undefined) {
      this.o.hub.restore(ch, snap)
      return { seq: snap.seq }
    }
    const msg = body['msg'] as ReplicaMessage
    if (!this.o.hub.applyReplica(ch, msg)) return { err: { code: new LiveError('MOVED').code, message: NEED_STATE } }
    return { seq: msg.seq }
  }

  /**
   * The `fill` request of a node that became the channel's home: the whole
   * state this node holds (`{}`: none). A node whose own table is older and
   * still names it the home stops acting as home until its table catches up.
   */
  onFill(from: string, body: Record<string, unknown>): unknown {
    const ch = body['ch'] as string
    const theirs = body['version'] as number
    const refusal = this.refuseUnlessHome(ch, from, false, theirs)
    if (refusal) return refusal
    if (this.o.owners(ch).home === this.o.self) this.state(ch).fencedBelow = Math.max(this.state(ch).fencedBelow, theirs)
    const after = body['after']
    if (typeof after === 'number') return this.o.hub.messagesAfter(ch, after, this.o.budget)
    return this.o.hub.snapshot(ch, this.o.budget) ?? {}
  }

  /** A refusal when `from` is not the channel's home in this node's table (and that table is not older than theirs), or this node not its backup. */
  private refuseUnlessHome(ch: string, from: string, mustBeBackup: boolean, theirs = Infinity): Refusal | null {
    const owners = this.o.owners(ch)
    const version = this.o.version()
    const notHome = owners.home !== from && version >= theirs
    const notBackup = mustBeBackup && (owners.home !== from || owners.backup !== this.o.self)
    if (!notHome && !notBackup) return null
    return { err: { code: new LiveError('MOVED').code, message: `${from} is not the home of ${ch} here (routing version ${version})` }, version, home: owners.home }
  }

  close(): void {
    for (const ch of this.states.keys()) this.rejectAll(ch, new LiveError('UNAVAILABLE', 'the node is stopping'))
    for (const s of this.states.values()) if (s.retry) clearTimeout(s.retry)
  }
}
