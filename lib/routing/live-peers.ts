/**
 * The Live peers of a routing table: who homes channels. A node run with
 * `--live-homes children` lists its children as peers of their own (the
 * table's `peers`: `<node>/<index>.<pid>`, each with its own internal link);
 * any other Live node is one peer, its parent, on `port + --live-link-offset`.
 * A channel's home is its first peer by rendezvous hashing over these
 * (./rendezvous.ts), so every Live process and publisher that holds the same
 * table picks the same home.
 */
import type { LivePeer, RoutingNode, RoutingTable } from '../core/node-state.js'
import { Rendezvous } from './rendezvous.js'

export interface LivePeerEntry {
  /** The peer's id: the node id, or `<node>/<index>.<pid>` for a child. */
  readonly id: string
  readonly address: string
  /** Where its internal link listens. */
  readonly linkPort: number
  /** The node (machine, process tree) it runs in. */
  readonly node: string
}

/** The peers a node stands for: the children it lists, else itself, its link on `port + linkOffset`. */
const peersOfNode = (n: RoutingNode, linkOffset: number): readonly LivePeer[] => n.peers ?? [{ id: n.id, linkPort: n.port + linkOffset }]

/** The peers of `nodes`, in table order. */
export function livePeersOf(nodes: RoutingTable['nodes'], linkOffset: number): LivePeerEntry[] {
  return nodes.flatMap((n) => peersOfNode(n, linkOffset).map((p) => ({ id: p.id, address: n.address, linkPort: p.linkPort, node: n.id })))
}

/**
 * A channel's home and its backup (`--live-replicas 2`): the first peer of its
 * rendezvous order on another node than the home (a sibling dies with the
 * machine), else, with one node, the next of its children (null: one peer).
 */
export function homeAndBackup(table: Rendezvous<LivePeerEntry>, ch: string): { home: string; backup: string | null } {
  const ranked = table.rank(ch)
  const home = ranked[0]!
  const backup = ranked.find((p) => p.node !== home.node) ?? ranked[1]
  return { home: home.id, backup: backup?.id ?? null }
}

/** `host:port` of a peer's link, IPv6 addresses bracketed. */
export const linkAddress = (peer: Pick<LivePeerEntry, 'address' | 'linkPort'>): string =>
  `${peer.address.includes(':') ? `[${peer.address}]` : peer.address}:${peer.linkPort}`

/**
 * The proxy's table: a key's Live node is the node of the peer a channel of
 * that name is homed on (the node itself, or one of its children), so a
 * client routed by its channel lands where the channel lives. With no node
 * run with `--live-homes children` it picks what rendezvous over the nodes
 * picks.
 */
export class NodesByHome<N extends RoutingNode> {
  readonly nodes: readonly N[]
  private readonly peers: Rendezvous<{ readonly id: string; readonly node: N }>

  constructor(nodes: readonly N[]) {
    this.nodes = nodes
    this.peers = new Rendezvous(nodes.flatMap((node) => peersOfNode(node, 0).map((p) => ({ id: p.id, node }))))
  }

  pick(key: string): N | undefined {
    return this.peers.pick(key)?.node
  }
}
