/**
 * A Live node's way to the homes of its channels: a request or a message to a
 * channel's home, answered here when the home is this node, else sent over an
 * internal link to that peer (roles/live/link.ts answers it there). One link
 * per peer, opened on first use, kept while the peer is in the routing table;
 * a request answered MOVED is sent again to the home of the next table.
 */
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import { waitAtMost } from '../../lib/core/signal.js'
import { linkAddress, type LivePeerEntry } from '../../lib/routing/live-peers.js'
import { createMetaClient, type MetaClient } from '../../lib/transport/meta-client.js'
import { LiveError, liveErrorOf } from './errors.js'
import type { HubEvent } from './hub.js'
import type { HomeOps } from './link.js'
import { isFailure, type WireFailure } from './messages.js'

/** How long a request to a home, or a link to it coming up, may take. */
export const HOME_TIMEOUT_MS = 5000
/** A request answered MOVED (the channel's home changed under it) is sent again to the home of the next table, at most this often. */
const MOVED_RETRIES = 3
/**
 * Answered MOVED by the home this node's table names, a request waits for this node's next table at most this long
 * (doubled on each retry) before it asks that home again: the home's own table may be the one behind (it applied the
 * table that makes it the home a moment after this node), and then no newer table comes here.
 */
const MOVED_WAIT_MS = 200
/**
 * A request to a channel's home is answered within this, its MOVED retries, link waits and table waits included:
 * before the child's 10 s wait for its parent ends, so the client hears 5030 rather than a timeout, and nothing is
 * still being tried for it after that.
 */
export const FORWARD_DEADLINE_MS = 9000

/** A request sent over one link (the home's answer, a failure included, as it came). */
export type LinkRequest = (op: string, body: unknown) => Promise<unknown>

interface Peer {
  readonly client: MetaClient
  readonly address: string
  /** Aborted when the node leaves the routing table: requests still waiting for the link go to the new home. */
  readonly left: AbortController
}

export interface HomeLinksOptions {
  readonly config: NodeConfig
  readonly log: Logger
  /** This peer's id (the node's, or its child's: lib/routing/live-peers.ts). */
  readonly self: string
  /** The home's side of an op, on this node (the channel is homed here). */
  answerHere(op: keyof HomeOps, body: Record<string, unknown>): unknown
  /** The channel's home under this node's routing table. */
  homeOf(ch: string): string
  /** The routing table's entry for a node (undefined: not listed). */
  entry(id: string): Pick<LivePeerEntry, 'address' | 'linkPort'> | undefined
  /** Settles when the next routing table is applied: what a request answered MOVED waits for. */
  nextTable(): Promise<void>
  /** An event a peer home pushed. */
  onEvent(event: HubEvent, from: string): void
  /** After every (re)connect of the link to `home`: this node renews its interest and members there. */
  onConnect(home: string, request: LinkRequest): void
  /** {@link FORWARD_DEADLINE_MS} unless given (tests). */
  readonly forwardDeadlineMs?: number
}

export interface HomeLinks {
  /** Links kept (espra_live_hub_peers). */
  readonly size: number
  /** A request to the channel's home; answered MOVED, it is sent again to the home of the next table. */
  homeRequest<T>(home: string, op: keyof HomeOps, body: Record<string, unknown>): Promise<T>
  /** A message to the channel's home, not answered (sent only on a link that is up). */
  homeSend(home: string, op: 'unsub' | 'join' | 'leave', body: Record<string, unknown>): void
  /** Requests over the link to `node` once it is up; throws now if the table does not list the node. */
  requester(node: string): LinkRequest
  /** Whether the link to `node` is up (undefined: this node keeps no link to it). */
  linkUp(node: string): boolean | undefined
  /** Closes the links to the nodes not in `ids` (they left the routing table). */
  dropLeft(ids: ReadonlySet<string>): void
  /** Ends every link now. */
  destroy(): void
}

export function createHomeLinks(o: HomeLinksOptions): HomeLinks {
  const { config, log } = o
  const self = o.self
  const forwardDeadlineMs = o.forwardDeadlineMs ?? FORWARD_DEADLINE_MS
  const peers = new Map<string, Peer>()

  function peer(id: string): Peer {
    let p = peers.get(id)
    if (p) return p
    const entry = o.entry(id)
    if (!entry) throw new LiveError('UNAVAILABLE', `Live peer ${id} is not in the routing table`)
    const address = linkAddress(entry)
    const client = createMetaClient({
      seeds: [address], secret: config.secret, peer: { kind: 'node', id: self }, maxFrame: config.maxFrame, log, reconnect: true,
      backoffMaxMs: 2000, label: `Live peer ${id}`,
      onPush: (op, body) => {
        if (op === 'ev') o.onEvent(body as HubEvent, id)
      },
      // After every (re)connect: renew this node's interest and members at that home, recovering what was missed.
      onConnect: async (link) => {
        o.onConnect(id, (op, body) => link.request(op, body, HOME_TIMEOUT_MS))
      },
    })
    p = { client, address, left: new AbortController() }
    peers.set(id, p)
    return p
  }

  async function connected(p: Peer, timeoutMs = HOME_TIMEOUT_MS): Promise<void> {
    if (p.client.connected) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LiveError('UNAVAILABLE', `home link ${p.address} is down`)), timeoutMs)
      const left = (): void => {
        clearTimeout(timer)
        reject(new LiveError('UNAVAILABLE', `home ${p.address} left the routing table`))
      }
      if (p.left.signal.aborted) return left()
      p.left.signal.addEventListener('abort', left, { once: true })
      p.client.on('connected', () => {
        clearTimeout(timer)
        p.left.signal.removeEventListener('abort', left)
        resolve()
      })
    })
  }

  /**
   * A request to the channel's home. Answered MOVED (replicas: the home changed while it was in flight), it is sent
   * again to the home of the next routing table this node applies (a publish id makes a retried publish safe).
   */
  async function homeRequest<T>(home: string, op: keyof HomeOps, body: Record<string, unknown>, again = true, moves = 0, deadline = Date.now() + forwardDeadlineMs): Promise<T> {
    const tableSeen = o.nextTable()
    try {
      return await sendHome<T>(home, op, body, again, deadline)
    } catch (err) {
      if (liveErrorOf(err).code !== 5031 || moves >= MOVED_RETRIES || typeof body['ch'] !== 'string') throw err
      const ch = body['ch']
      // Told by the home itself: wait a little for this node's table to catch up (or the home's), unless it already
      // names another home. Seen in a rolling restart: a publish held 5 s waiting for a table that never came here.
      if (o.homeOf(ch) === home) {
        await waitAtMost(tableSeen, Math.min(MOVED_WAIT_MS * 2 ** moves, Math.max(0, deadline - Date.now())))
      }
      return homeRequest<T>(o.homeOf(ch), op, body, again, moves + 1, deadline)
    }
  }

  async function sendHome<T>(home: string, op: keyof HomeOps, body: Record<string, unknown>, again: boolean, deadline: number): Promise<T> {
    const left = Math.min(HOME_TIMEOUT_MS, deadline - Date.now())
    if (left <= 0) throw new LiveError('UNAVAILABLE', `no answer from the home of ${String(body['ch'])} within ${forwardDeadlineMs} ms (its home changed meanwhile); retry`)
    if (home === self) return (await o.answerHere(op, body)) as T
    const p = peer(home)
    try {
      await connected(p, left)
    } catch (err) {
      // The home left the table while its link was still connecting: nothing was sent, so the channel's new home
      // is asked once (a Live node joining or leaving under load, e.g. a rolling restart, answered these 503).
      if (again && p.left.signal.aborted && typeof body['ch'] === 'string') return homeRequest(o.homeOf(body['ch']), op, body, false, 0, deadline)
      throw err
    }
    const answer = await p.client.request<T | WireFailure>(op, body, Math.max(1, Math.min(HOME_TIMEOUT_MS, deadline - Date.now())))
    if (isFailure(answer)) throw Object.assign(new LiveError('INTERNAL', answer.err.message), { code: answer.err.code })
    return answer as T
  }

  return {
    get size() {
      return peers.size
    },
    homeRequest: (home, op, body) => homeRequest(home, op, body),
    homeSend(home, op, body) {
      if (home === self) o.answerHere(op, body)
      else peers.get(home)?.client.send(op, body)
    },
    requester(node) {
      const p = peer(node)
      return async (op, body) => {
        await connected(p)
        return p.client.request(op, body, HOME_TIMEOUT_MS)
      }
    },
    linkUp: (node) => peers.get(node)?.client.connected,
    dropLeft(ids) {
      for (const [id, p] of peers) {
        if (ids.has(id)) continue
        peers.delete(id)
        p.left.abort()
        // Not destroy: a request already sent to a node that left the table (drained: it still answers through its
        // grace) gets its answer; destroying the link answered it 503 UNAVAILABLE (seen in rolling restarts).
        p.client.close().catch((err: unknown) => log.debug({ err, id }, 'live: closing the link to a node that left the table'))
      }
    },
    destroy() {
      for (const p of peers.values()) p.client.destroy()
    },
  }
}
