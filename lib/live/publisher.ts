/**
 * Publishing to Live channels from any node (fileserver, app, seed, ...):
 * give it the region's routing table from the seed and it sends each publish
 * to the channel's home (a Live node, or one of its children:
 * lib/routing/live-peers.ts) over the internal link (authenticated with the
 * cluster secret), the same path a client's publish takes.
 */
import type { Logger } from '../core/log.js'
import { createError } from '../core/errors.js'
import type { RoutingTable } from '../core/node-state.js'
import { signal, waitAtMost } from '../core/signal.js'
import { linkAddress, livePeersOf, type LivePeerEntry } from '../routing/live-peers.js'
import { Rendezvous } from '../routing/rendezvous.js'
import { createMetaClient, type MetaClient } from '../transport/meta-client.js'
import { isChannel, isPublishId, PUBLISH_ID_MAX } from './channel.js'
import { messageBytes } from './message-size.js'

export interface LivePublisherOptions {
  readonly secret: string
  /** Identity on the link (this node's id). */
  readonly id: string
  readonly log: Logger
  /** `--live-link-offset` of the Live nodes (2000). */
  readonly linkOffset?: number
  readonly maxFrame?: number
  readonly timeoutMs?: number
  /**
   * `--live-max-message` (64 KB): a larger message fails here, before it is
   * sent; the channel's home holds it to its own limit all the same.
   */
  readonly maxMessage?: number
}

export interface LivePublisher {
  /** Replaces the routing table (call it with every `routing` push). */
  setRouting(table: RoutingTable): void
  /**
   * Resolves the message's sequence and timestamp; rejects with
   * `ESPRA_ERR_LIVE_PUBLISH` (details.code: the Live code; 4004 with
   * `bytes` and `limit` for a message over `maxMessage` or the home's limit).
   */
  publish(ch: string, data: unknown, id?: unknown): Promise<{ seq: number; ts: number }>
  close(): Promise<void>
}

/** A publish answered 5031 (moved: with `--live-replicas 2` the channel's home changed under it) is sent again to the home of the next table, at most this often. */
const MOVED_RETRIES = 3

export function createLivePublisher(opts: LivePublisherOptions): LivePublisher {
  const offset = opts.linkOffset ?? 2000
  const timeoutMs = opts.timeoutMs ?? 5000
  const maxMessage = opts.maxMessage ?? 64 * 1024
  let table: Rendezvous<LivePeerEntry> | null = null
  const links = new Map<string, { client: MetaClient; address: string }>()
  /** Resolved (and replaced) by every table set: what a publish answered 5031 waits for. */
  let nextTable = signal()

  function link(node: LivePeerEntry): MetaClient {
    const address = linkAddress(node)
    const known = links.get(node.id)
    if (known && known.address === address) return known.client
    known?.client.destroy()
    const client = createMetaClient({
      seeds: [address], secret: opts.secret, peer: { kind: 'node', id: opts.id }, maxFrame: opts.maxFrame ?? 1024 ** 2,
      log: opts.log, reconnect: true, backoffMaxMs: 2000, onPush: () => {}, label: `Live node ${node.id}`,
    })
    links.set(node.id, { client, address })
    return client
  }

  return {
    setRouting(next) {
      table = new Rendezvous(livePeersOf(next.nodes, offset))
      nextTable.resolve()
      nextTable = signal()
      const ids = new Set(table.nodes.map((n) => n.id))
      for (const [id, l] of links) {
        if (ids.has(id)) continue
        l.client.destroy()
        links.delete(id)
      }
    },
    async publish(ch, data, id) {
      // The reasons read as the Live node words them (roles/live/errors.ts and its checks).
      const channel = String(ch).slice(0, 140)
      if (!isChannel(ch)) throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: 'bad channel name: letters, digits and _ - : . @, 1 to 128 characters', code: 4002 })
      if (id !== undefined && !isPublishId(id)) throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: `a publish id must be 1 to ${PUBLISH_ID_MAX} printable ASCII characters`, code: 4003 })
      const bytes = messageBytes(data ?? null)
      if (bytes === null) throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: 'data must be a JSON value', code: 4003 })
      if (bytes > maxMessage) {
        throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: `message of ${bytes} bytes exceeds --live-max-message (${maxMessage} bytes)`, code: 4004, bytes, limit: maxMessage })
      }
      for (let moves = 0; ; moves++) {
        const home = table?.pick(ch)
        if (!home) throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: 'no Live node in the routing table', code: 5030 })
        const tableSeen = nextTable.promise
        const client = link(home)
        if (!client.connected) {
          await Promise.race([
            new Promise<void>((resolve) => client.on('connected', resolve)),
            new Promise<void>((_, reject) => setTimeout(() => reject(createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: `its home node ${home.id} is unreachable`, code: 5030 })), timeoutMs).unref()),
          ])
        }
        const answer = await client.request<{ seq: number; ts: number } | { err: { code: number; message: string } }>('pub', { ch, data, ...(id !== undefined ? { id } : {}) }, timeoutMs)
        if (!('err' in answer)) return answer
        // The home node's own text as the reason.
        if (answer.err.code !== 5031 || moves >= MOVED_RETRIES) throw createError('ESPRA_ERR_LIVE_PUBLISH', { channel, reason: answer.err.message, code: answer.err.code })
        // Moved, told by the home itself: wait for this node's table to catch up (the seed's next push), unless it names another home already.
        if (table?.pick(ch)?.id === home.id) {
          await waitAtMost(tableSeen, timeoutMs)
        }
      }
    },
    async close() {
      await Promise.all([...links.values()].map((l) => l.client.close()))
      links.clear()
    },
  }
}
