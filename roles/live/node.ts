/**
 * A Live peer: a hub that homes channels (roles/live/hub.ts), serves the
 * internal link other peers reach it on (the meta protocol's framing and
 * handshake: lib/transport/meta-server.ts), links to the homes of the
 * channels its clients use (roles/live/home-links.ts), and relays between
 * those and its clients' processes (roles/live/local-channel.ts). It runs in
 * a Live node's parent, whose children hold the clients (`--live-homes
 * node`), or in every child, for its own clients through a loopback
 * (`children`: ./loopback.ts). Homes are picked by rendezvous hashing over the
 * peers of the seed's routing table for the region
 * (lib/routing/live-peers.ts); a node the table does not list (yet) homes
 * everything, a child only what its table gives it (./child-peer.ts).
 */
import type { Registry } from 'prom-client'
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import type { RoutingTable, SeedPush } from '../../lib/core/node-state.js'
import type { EspraError } from '../../lib/core/errors.js'
import { signal } from '../../lib/core/signal.js'
import { compilePatterns } from '../../lib/live/channel.js'
import { homeAndBackup, livePeersOf, type LivePeerEntry } from '../../lib/routing/live-peers.js'
import { Rendezvous } from '../../lib/routing/rendezvous.js'
import { startMetaServer } from '../../lib/transport/meta-server.js'
import { gaugeFrom } from '../../lib/process/metric-sources.js'
import type { ChildrenChannel, Handle } from '../../lib/process/role.js'
import type { Catchup } from './channel-history.js'
import { LiveError, liveErrorOf } from './errors.js'
import { createHomeLinks, HOME_TIMEOUT_MS, type LinkRequest } from './home-links.js'
import { Hub, type HubEvent, type Sink } from './hub.js'
import { newLocalChannel, type LocalChannel as Local } from './local-channel.js'
import { createPresenceSettle, createPresenceSnapshot } from './presence-snapshot.js'
import { isFailure, type ChildMessage, type ChildRequest, type WireFailure } from './messages.js'
import { Renewal } from './renewal.js'
import { createHomeOps, createLinkHandlers, type HomeOps } from './link.js'
import { Replication, type Owners } from './replication.js'

const SWEEP_MS = 10_000
/** Count-only channels' member counts go out at most this often (coalesced: one event per channel whatever the churn). */
const PRESENCE_COUNT_MS = 1000
/**
 * After a channel's home changes, the node compares the members it knew with the new home's this long after its
 * renewal there ended (the other nodes have joined their members there by then) and sends the difference: the
 * members of a home that died leave.
 */
const PRESENCE_SETTLE_MS = 1000
/** A renewal at a home that failed is made again after this long (until it succeeds or the home changes). */
const RENEW_RETRY_MS = 250
/** A stopping node waits this long at most for its handovers (./handover.ts) to be answered. */
const HANDOFF_MS = 5000

/** What a Live peer runs on: a node's parent and its children, or one child and its own clients (./loopback.ts). */
export interface LivePeerContext {
  readonly config: NodeConfig
  readonly log: Logger
  /** The processes that hold the clients. */
  readonly children: ChildrenChannel
  readonly metrics: Registry
  onPush(listener: (push: SeedPush) => void): void
  /** This peer's id: the node id, or `<node>/<index>.<pid>` for a child (lib/routing/live-peers.ts). */
  readonly self: string
  /** Where its internal link may listen, tried in order: the first one free. */
  readonly linkPorts: readonly number[]
  /** The region's routing table when it starts (null: none yet); later ones come as pushes. */
  readonly routing: RoutingTable | null
  /** One of a node's children (`--live-homes children`): it never homes a channel alone, without a table that lists peers (its siblings would home it too). */
  readonly child: boolean
}

/** A started peer; `linkPort`: where its link listens. */
export interface LivePeerHandle extends Handle {
  readonly linkPort: number
}

export async function startLiveNode(ctx: LivePeerContext): Promise<LivePeerHandle> {
  const { config, log, children, self } = ctx
  const hub = new Hub({
    historySize: config.liveHistorySize, historyAgeMs: config.liveHistoryAge, historyBytes: config.liveHistoryBytes, maxMessageBytes: config.liveMaxMessage,
    countOnly: compilePatterns(config.livePresenceCountOnly),
  })
  const local = new Map<string, Local>()
  gaugeFrom(ctx.metrics, 'espra_live_hub_channels', 'channels whose home is this Live peer, the node or (--live-homes children) this child (history, sequence and presence kept here)', () => hub.size)
  let table: Rendezvous<LivePeerEntry> | null = null
  let listed = false
  let version = 0
  /** Resolved (and replaced) by every routing table applied: what a request answered MOVED waits for. */
  let nextTable = signal()
  // Its callbacks reach homeOps, selfSink and the relay below: nothing calls them before startLiveNode has set those.
  const links = createHomeLinks({
    config, log, self,
    answerHere: (op, body) => homeOps[op](selfSink, body),
    homeOf, entry: (id) => table?.nodes.find((n) => n.id === id), nextTable: () => nextTable.promise,
    onEvent: (event, from) => deliver(event, from),
    onConnect: (home, request) => {
      for (const [ch, l] of local) if (l.home === home && l.lastSeq >= 0) resubscribe(ch, l, request)
    },
  })
  const { homeRequest, homeSend } = links
  gaugeFrom(ctx.metrics, 'espra_live_hub_peers', 'other Live peers this one keeps a link to (for channels homed there)', () => links.size)

  /** The first routing table, or HOME_TIMEOUT_MS without one (a node with no seed homes everything alone). */
  const firstTable = Promise.race([nextTable.promise, new Promise<void>((resolve) => setTimeout(resolve, HOME_TIMEOUT_MS).unref())])
  const selfSink: Sink = { id: self, send: (event) => deliver(event, self) }
  const replicated = config.liveReplicas >= 2
  const replication = replicated
    ? new Replication({
        hub, self, log, owners, version: () => version,
        firstTable: () => firstTable,
        // A quarter of the link's frame limit: a transfer frame also carries its framing and msgpack's overhead.
        budget: Math.max(64 * 1024, Math.floor(config.maxFrame / 4)),
        request: async (node, op, body) => links.requester(node)(op, body),
      })
    : undefined
  const homeOps: HomeOps = createHomeOps(hub, replication)
  if (replication) {
    gaugeFrom(ctx.metrics, 'espra_live_replicated_messages', 'messages this node, as a channel\'s home, had acknowledged by the backup (a counter)', () => replication.replicated)
    gaugeFrom(ctx.metrics, 'espra_live_handed_over_channels', 'channels this node took over whole from a Live node that left (drained or stopping; a counter)', () => replication.handover.taken)
    gaugeFrom(ctx.metrics, 'espra_live_replication_pending', 'publishes this node, as a channel\'s home, holds until its backup has them (replication lag, in messages)', () => replication.pending)
  }

  /**
   * A node the table does not list homes every channel itself (no seed yet). With replicas, a node that is not
   * listed while others are (stopped and taken out, or drained) homes nothing: the listed homes hold the channels.
   * A child homes nothing alone: its siblings would home the same channels apart (without a seed, its parent gives it a table).
   */
  function homeOf(ch: string): string {
    if (table && table.size > 0 && (listed || replicated || ctx.child)) return table.pick(ch)!.id
    if (ctx.child) throw new LiveError('UNAVAILABLE', 'no Live peer to home the channel yet: this node\'s children are still starting')
    return self
  }

  /** The channel's home and backup under this peer's table (lib/routing/live-peers.ts). */
  function owners(ch: string): Owners {
    if (!table || table.size === 0 || (!listed && !replicated)) return { home: self, backup: null }
    return homeAndBackup(table, ch)
  }

  // ---- events from homes to this node's children ----
  function deliver(event: HubEvent, from: string): void {
    const l = local.get(event.ch)
    if (!l || l.home !== from) return
    if (event.k === 'msg') {
      if (l.renewal) {
        const { k: _k, ...message } = event
        l.renewal.held.push(message)
        return
      }
      if (event.seq <= l.lastSeq) return
      if (l.lastSeq >= 0 && event.seq > l.lastSeq + 1) {
        // Seqs grow by 1 at one home: this node missed some. The children get them, or a reset with the gap, first.
        log.info({ ch: event.ch, home: from, last: l.lastSeq, seq: event.seq }, 'live: a seq jump from the home; renewing the channel there first')
        renew(event.ch, l)
        const { k: _k, ...message } = event
        ;(l.renewal as Renewal | null)?.held.push(message) // set by renew(); TypeScript narrowed it to null above
        return
      }
      l.lastSeq = event.seq
      if (l.pending > 0) {
        const { k: _k, ...message } = event
        l.recent.push(message)
      }
    } else if (event.k === 'presence') {
      const news = l.presence.onEvent(event)
      if (!news) return
      event = { ...event, ...news }
    }
    for (const child of l.children) children.send(child, event)
  }

  // The home's members for the children (after a home change, the difference from what they were told).
  const snapshotPresence = createPresenceSnapshot({ log, children, current: (ch) => local.get(ch), isCountOnly: (ch) => hub.isCountOnly(ch), homeRequest: (home, op, body) => homeRequest(home, op, body) })
  const settleAfter = createPresenceSettle(snapshotPresence, (ch) => local.get(ch), PRESENCE_SETTLE_MS)

  /**
   * Renews interest after a move or a reconnect; what cannot be recovered resets the children's subscribers. The
   * home's messages read before its answer wait for it, so the reset comes before the first message of a new sequence.
   */
  function resubscribe(ch: string, l: Local, request: LinkRequest): void {
    const home = l.home
    const earlier = l.renewal
    const renewal = (l.renewal = new Renewal(home, earlier?.home === home ? earlier.held : []))
    earlier?.finish()
    /**
     * A renewal that failed is made again until it succeeds or is superseded (a new table, a reconnect, the channel
     * released): ended, this node's children would wait for messages the home never sends it, and the next
     * subscription here would move the relayed position past them (issue #16: seqs jumped with no gap reported).
     */
    const again = (): void => {
      setTimeout(() => {
        if (l.renewal !== renewal) return
        if (local.get(ch) !== l || l.home !== home) return endRenewal(l, false)
        attempt()
      }, RENEW_RETRY_MS).unref()
    }
    const attempt = (): void => void request('sub', l.lastSeq >= 0 ? { ch, since: l.lastSeq } : { ch }).then(
      (answer) => {
        if (l.renewal !== renewal) return
        if (local.get(ch) !== l || l.home !== home) return endRenewal(l, false)
        if (isFailure(answer)) {
          log.warn({ ch, home, code: answer.err.code, err: answer.err.message }, 'live: the home refused to renew a channel; renewing it again')
          return again()
        }
        const c = answer as Catchup
        l.renewal = null
        if (!c.recovered) {
          // The reset is at the gap's end: the messages the home still holds after it follow (a new home's first ones).
          l.lastSeq = c.messages.length > 0 ? c.messages[0]!.seq - 1 : c.seq
          for (const child of l.children) children.send(child, { k: 'reset', ch, seq: l.lastSeq, ...(c.gap !== undefined ? { gap: c.gap } : {}) })
        }
        for (const m of c.messages) deliver({ k: 'msg', ...m }, home)
        endRenewal(l, true, renewal)
        for (const { member } of l.users.values()) homeSend(home, 'join', { ch, member })
      },
      (err: unknown) => {
        if (l.renewal !== renewal) return
        log.warn({ ch, home, err: (err as Error).message }, 'live: could not renew a channel at its home; renewing it again')
        again()
      },
    )
    attempt()
  }

  /** Renews the channel at its current home (a seq jump, or subscribers here that missed messages). */
  function renew(ch: string, l: Local): void {
    try {
      resubscribe(ch, l, requestAt(l.home))
    } catch (err) {
      log.warn({ ch, home: l.home, err: (err as Error).message }, 'live: new home unreachable')
    }
  }

  /** Requests to `home` over its link, or answered here when it is this node; throws if the table does not list it. */
  function requestAt(home: string): LinkRequest {
    if (home === self) return async (op, body) => homeOps[op as keyof HomeOps](selfSink, body as Record<string, unknown>)
    return links.requester(home)
  }

  /**
   * Ends the channel's renewal (`renewal`: one already detached from `l`): its held messages are relayed (`relay`,
   * as before the renewal: the same home's) or dropped (an earlier home's), and the subscriptions waiting go on.
   */
  function endRenewal(l: Local, relay: boolean, renewal = l.renewal): void {
    if (!renewal) return
    if (l.renewal === renewal) l.renewal = null
    if (relay) for (const m of renewal.held) deliver({ k: 'msg', ...m }, renewal.home)
    renewal.finish()
  }

  /**
   * Until the channel has no renewal in flight: a child's subscription is neither asked nor answered across one, as
   * the renewal's held messages go to the children already subscribed before an answer moves the relayed position past them.
   */
  async function renewed(l: Local): Promise<void> {
    while (l.renewal) await l.renewal.done
  }

  function release(ch: string, l: Local): void {
    if (l.children.size > 0 || l.pending > 0 || l.users.size > 0 || local.get(ch) !== l) return
    local.delete(ch)
    endRenewal(l, false)
    if (l.settle) clearTimeout(l.settle)
    homeSend(l.home, 'unsub', { ch })
  }

  function localFor(ch: string): Local {
    let l = local.get(ch)
    if (!l) local.set(ch, (l = newLocalChannel(homeOf(ch))))
    return l
  }

  // ---- children ----

  async function answerChild(child: number, req: ChildRequest): Promise<unknown> {
    switch (req.k) {
      case 'sub': {
        const l = localFor(req.ch)
        l.pending++
        try {
          let home: string
          let answer: Catchup
          do {
            await renewed(l)
            home = l.home
            answer = await homeRequest<Catchup>(home, 'sub', req.since === undefined ? { ch: req.ch } : { ch: req.ch, since: req.since })
            await renewed(l)
            // The home is past what this node relayed: the children already subscribed missed messages (issue #16).
            // They are caught up (or told the gap) first; moving the position past them would hide it.
            if (home === l.home && l.lastSeq >= 0 && l.children.size > 0 && answer.seq > l.lastSeq) {
              renew(req.ch, l)
              await renewed(l)
            }
            // The home changed meanwhile: the reset went to the children already subscribed (not to this one), so this
            // one asks the new home; the old one registered this node again, after the move's unsub.
            if (home !== l.home) homeSend(home, 'unsub', { ch: req.ch })
          } while (home !== l.home)
          if (answer.seq > l.lastSeq) l.lastSeq = answer.seq
          l.children.add(child)
          if (l.presence.wanted) snapshotPresence(req.ch, l, false)
          const later = l.recent.filter((m) => m.seq > answer.seq)
          // The answer's seq rises to the last message it carries: the child adds only what it got after that (the
          // child, if already subscribed, got these too; with the old seq it sent them twice, issue #16).
          return later.length === 0 ? answer : { ...answer, seq: later.at(-1)!.seq, messages: [...answer.messages, ...later] }
        } finally {
          if (--l.pending === 0) l.recent = []
          release(req.ch, l)
        }
      }
      case 'hist':
        return homeRequest(homeOf(req.ch), 'hist', { ch: req.ch, since: req.since, limit: req.limit })
      case 'pub':
        return homeRequest(homeOf(req.ch), 'pub', { ch: req.ch, data: req.data, ...(req.id !== undefined ? { id: req.id } : {}) })
      case 'presence':
        return homeRequest(homeOf(req.ch), 'presence', { ch: req.ch })
    }
  }

  children.onRequest((child, body) =>
    answerChild(child, body as ChildRequest).catch((err: unknown) => {
      const e = liveErrorOf(err)
      if (e.code === 5000) log.error({ err }, 'live: request failed')
      return { err: { code: e.code, message: e.message } } satisfies WireFailure
    }),
  )

  children.onMessage((child, body) => {
    const msg = body as ChildMessage
    const l = local.get(msg.ch)
    if (!l) return
    if (msg.k === 'unsub') {
      l.children.delete(child)
    } else if (msg.k === 'join') {
      let u = l.users.get(msg.member.user)
      if (!u) {
        l.users.set(msg.member.user, (u = { member: msg.member, children: new Set() }))
        homeSend(l.home, 'join', { ch: msg.ch, member: msg.member })
      }
      u.children.add(child)
    } else if (msg.k === 'leave') {
      dropUser(msg.ch, l, msg.user, child)
    }
    release(msg.ch, l)
  })

  function dropUser(ch: string, l: Local, user: string, child: number): void {
    const u = l.users.get(user)
    if (!u || !u.children.delete(child) || u.children.size > 0) return
    l.users.delete(user)
    homeSend(l.home, 'leave', { ch, user })
  }

  children.onExit((child) => {
    for (const [ch, l] of local) {
      l.children.delete(child)
      for (const user of [...l.users.keys()]) dropUser(ch, l, user, child)
      release(ch, l)
    }
  })

  // ---- routing ----

  function onRouting(next: RoutingTable): void {
    if (next.region !== config.region) return
    const peers = livePeersOf(next.nodes, config.liveLinkOffset)
    const ids = new Set(peers.map((n) => n.id))
    // Members on a node that left the table leave the channels homed here now, not when its link times out.
    for (const n of table?.nodes ?? []) {
      if (ids.has(n.id)) continue
      // A node the seed lost (silent, as a frozen one whose link still looks up) or whose link is down hands nothing
      // over: no home waits for its handover. A drained or stopping node may.
      const lost = next.lost !== undefined && (next.lost.includes(n.node) || next.lost.includes(n.id))
      replication?.handover.nodeLeft(n.id, !lost && links.linkUp(n.id) !== false)
      if (n.id !== self) hub.dropNodeMembers(n.id)
    }
    table = new Rendezvous(peers)
    const wasListed = listed
    listed = ids.has(self)
    version = next.version
    replication?.onTable()
    // Taken out (drained): once the handovers onTable started were answered, the homes need not wait for more.
    if (wasListed && !listed) void replication?.handover.announce([...ids])
    nextTable.resolve()
    nextTable = signal()
    let moved = 0
    // A child with a table that lists no peer (their children still starting) keeps its channels' homes until one does.
    for (const [ch, l] of ctx.child && peers.length === 0 ? [] : local) {
      const home = homeOf(ch)
      if (home === l.home) continue
      moved++
      homeSend(l.home, 'unsub', { ch })
      endRenewal(l, false)
      l.home = home
      if (l.settle) clearTimeout(l.settle)
      settleAfter(ch, l, home)
      renew(ch, l)
    }
    links.dropLeft(ids)
    log.info({ version: next.version, nodes: next.nodes.length, peers: peers.length, listed, moved }, 'live: routing table applied')
  }
  ctx.onPush((push) => {
    if (push.op === 'routing') onRouting(push.body as RoutingTable)
  })
  if (ctx.routing) onRouting(ctx.routing)

  // ---- the internal link ----

  const linkOps = createLinkHandlers(homeOps, hub, (op, err) => log.warn({ op, code: err.code, reason: err.message }, 'live link: ignored a malformed message'), replication)
  const link = await listenOnFirst(ctx.linkPorts, (port) => startMetaServer({
    host: config.bind, port, secret: config.secret, seedId: self,
    maxFrame: config.maxFrame, log, label: 'live link', option: '--live-link-offset', ...linkOps,
  }))
  const sweep = setInterval(() => hub.sweep(), SWEEP_MS)
  sweep.unref()
  const counts = setInterval(() => hub.flushCounts(), PRESENCE_COUNT_MS)
  counts.unref()

  return {
    linkPort: link.port,
    async close() {
      // Stopping: every channel held here goes to the home it has without this node (a drained node did it when it left the table).
      const rest = new Rendezvous(table?.nodes.filter((n) => n.id !== self) ?? [])
      await replication?.handover.handOff((ch) => rest.pick(ch)?.id ?? null, rest.nodes.map((n) => n.id), HANDOFF_MS)
      replication?.close()
      for (const l of local.values()) if (l.settle) clearTimeout(l.settle)
      clearInterval(sweep)
      clearInterval(counts)
      links.destroy()
      await link.close()
    },
    destroy(err) {
      replication?.close()
      clearInterval(sweep)
      clearInterval(counts)
      links.destroy()
      link.destroy(err)
    },
  }
}

/** Starts `listen` on the first of `ports` that is free (a port in use moves on to the next; the last one's failure is thrown). */
async function listenOnFirst<T>(ports: readonly number[], listen: (port: number) => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await listen(ports[i]!)
    } catch (err) {
      if (i === ports.length - 1 || (err as EspraError).details?.['reason'] !== 'EADDRINUSE') throw err
    }
  }
}
