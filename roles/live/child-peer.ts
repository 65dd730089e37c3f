/**
 * `--live-homes children`: every Live child is a Live peer of its own
 * (./node.ts), homing its share of the channels for its own clients through
 * an in-process loopback (./loopback.ts) and linking straight to the other
 * peers, so publishes, history and presence never cross the parent. Its id
 * is `<node>/<index>.<pid>`: a replaced or crashed child is a new peer.
 *
 * The child tells its parent its peer once its link listens, and that it
 * leaves before it hands its channels over; the parent reports its
 * children's peers to the seed (register and heartbeats), whose routing
 * tables list them (lib/routing/live-peers.ts). A child that exits without
 * leaving (a crash) drops out as soon as the parent sees it exit, reported
 * lost (`livePeersLost`), so the seed's next table tells every peer not to
 * wait for a handover from it. Until the seed's first table, the parent gives
 * its children a table of their own peers, so a node without a seed serves
 * alone as with `--live-homes node`.
 */
import type { NodeConfig } from '../../lib/core/config.js'
import type { LivePeer, RoutingTable, SeedPush } from '../../lib/core/node-state.js'
import type { ChildContext, Handle, ParentChannel, ParentContext } from '../../lib/process/role.js'
import { MAX_LIVE_PEERS_LOST } from '../../lib/transport/meta-shapes.js'
import { createLoopback } from './loopback.js'
import { startLiveNode } from './node.js'

type PeerMessage = { k: 'peer'; id: string; linkPort: number } | { k: 'peer-left' }
/** From the parent while it has no table from the seed: one of just this node and its children's peers. */
interface LocalTable {
  readonly k: 'local-table'
  readonly table: RoutingTable
}

/** This node alone, its children its peers (version 0: any table from the seed is newer). */
function localTable(config: NodeConfig, peers: readonly LivePeer[]): RoutingTable {
  const address = config.bind === '0.0.0.0' || config.bind === '::' ? '127.0.0.1' : config.bind
  return { region: config.region, version: 0, nodes: [{ id: config.nodeId, address, port: config.port, peers }] }
}

/** The parent's side: its children's peers, reported to the seed as they come and go. */
export function reportChildPeers(ctx: ParentContext): Handle {
  const { log } = ctx
  const peers = new Map<number, LivePeer>()
  /** The latest peers that exited without leaving, newest last: the seed tells the others not to wait for their handover. */
  const lost: string[] = []
  let seeded = false
  ctx.onPush((push) => void (seeded ||= push.op === 'routing'))
  const report = (): void => {
    const list = [...peers.values()].sort((a, b) => (a.id < b.id ? -1 : 1))
    ctx.setLivePeers(list, lost)
    // Pushes and role messages share the children's IPC channel, in order: none of these follows the seed's table.
    if (!seeded) ctx.children.broadcast({ k: 'local-table', table: localTable(ctx.config, list) } satisfies LocalTable)
  }
  // Listed with no peers until a child is up: other nodes never take this node's parent for a home.
  report()
  ctx.children.onMessage((child, body) => {
    const m = body as PeerMessage
    if (m.k === 'peer') {
      peers.set(child, { id: m.id, linkPort: m.linkPort })
      log.info({ peer: m.id, linkPort: m.linkPort }, 'live: a child homes channels')
    } else if (m.k === 'peer-left' && peers.has(child)) {
      log.info({ peer: peers.get(child)!.id }, 'live: a child leaves: its channels go to their next homes')
      peers.delete(child)
    } else {
      return
    }
    report()
  })
  ctx.children.onExit((child) => {
    const peer = peers.get(child)
    if (peer === undefined) return
    log.warn({ peer: peer.id }, 'live: a child that homed channels exited without handing them over: their backups take over')
    peers.delete(child)
    lost.push(peer.id)
    if (lost.length > MAX_LIVE_PEERS_LOST) lost.shift()
    report()
  })
  return { close: async () => {}, destroy: () => {} }
}

export interface ChildPeer {
  /** What the child's client side talks to instead of the parent. */
  readonly clients: ParentChannel
  /** Leaves the routing table, hands its channels over, then closes. */
  close(): Promise<void>
  destroy(err?: Error): void
}

/** The child's side: starts its peer; its link on `port + --live-link-offset + index`, or `+ --children` more while its predecessor still holds that. */
export async function startChildPeer(ctx: ChildContext): Promise<ChildPeer> {
  const { config } = ctx
  const self = `${config.nodeId}/${ctx.index}.${process.pid}`
  const { parent: clients, children } = createLoopback()
  // The seed's pushes, and the parent's local tables (sent only before the seed's first table, which follows them on the same channel).
  const pushes: ((push: SeedPush) => void)[] = []
  ctx.onPush((push) => {
    for (const l of pushes) l(push)
  })
  ctx.parent.onMessage((body) => {
    const m = body as LocalTable
    if (m.k === 'local-table') for (const l of pushes) l({ op: 'routing', body: m.table })
  })
  const base = config.port + config.liveLinkOffset + ctx.index
  const node = await startLiveNode({
    config, log: ctx.log, children, metrics: ctx.metrics, onPush: (l) => void pushes.push(l),
    self, linkPorts: [base, base + config.children], routing: ctx.state().routing, child: true,
  })
  ctx.parent.send({ k: 'peer', id: self, linkPort: node.linkPort } satisfies PeerMessage)
  return {
    clients,
    async close() {
      ctx.parent.send({ k: 'peer-left' } satisfies PeerMessage)
      await node.close()
    },
    destroy: (err) => node.destroy(err),
  }
}
