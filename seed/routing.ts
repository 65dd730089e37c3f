/**
 * Per-region routing tables: the Live nodes of each region that serve
 * ({@link servesTraffic}), sorted by id, each with the children that home
 * its channels when it runs `--live-homes children` (`peers`), with a
 * time-based version so it keeps growing across seed restarts. A table is
 * pushed to that region's subscribers only when its node list (or a node's
 * peers) changes; during the seed's start-up grace pushes are held and each
 * subscribed region's table is pushed once when the grace ends.
 */
import { encodeMessage, type MessageFrame } from '../lib/transport/meta-frames.js'
import { copyLivePeers, type RoutingTable } from '../lib/transport/meta-shapes.js'
import { sameLivePeers, type NodeChange, type Registry } from './registry.js'

/**
 * Whether a node's health lets it take traffic. `ok` does; `degraded` does
 * while at least one child serves (a child crash-looping beside healthy ones
 * must not take a node out: that turned one bad child into 503s for every
 * client of the node); a degraded node with no child alive, `draining` and
 * `suspect` do not.
 */
export function servesTraffic(node: { readonly health: string; readonly children: number }): boolean {
  return node.health === 'ok' || (node.health === 'degraded' && node.children > 0)
}

/** Anything that can take a pre-encoded push frame (a meta session). */
export interface RoutingSubscriber {
  sendEncoded(frame: MessageFrame): boolean
}

export class Routing {
  private readonly registry: Registry
  private readonly tables = new Map<string, RoutingTable>()
  private readonly subscribers = new Map<string, Set<RoutingSubscriber>>()
  private readonly dirty = new Set<string>()
  private flushQueued = false
  private lastVersion = 0
  private closed = false
  /** Live nodes the seed lost (silent past the timeout, or their connection closed), and Live peers their node reported dead, not yet named by a table. */
  private readonly lost = new Map<string, string>()
  private readonly drained: (id: string) => boolean

  /** `drained`: nodes an operator took out (`admin drain`), left out whatever their health says. */
  constructor(registry: Registry, drained: (id: string) => boolean = () => false) {
    this.registry = registry
    this.drained = drained
    registry.onChange((change) => this.noteChange(change))
    registry.onGraceEnd(() => this.pushAll())
  }

  /** The current table of a region (computed now if it changed). */
  table(region: string): RoutingTable {
    if (this.dirty.has(region)) this.flush()
    let table = this.tables.get(region)
    if (table === undefined) {
      table = { region, version: this.nextVersion(), nodes: this.compute(region) }
      this.tables.set(region, table)
    }
    return table
  }

  /** Adds a subscriber; it gets the current table at once unless the seed is in its grace. */
  subscribe(region: string, subscriber: RoutingSubscriber): void {
    let set = this.subscribers.get(region)
    if (set === undefined) this.subscribers.set(region, (set = new Set()))
    if (set.has(subscriber)) return
    set.add(subscriber)
    // After the current tick, so a `subscribe` answer goes out before the first push.
    if (!this.registry.inGrace) {
      queueMicrotask(() => {
        if (!this.closed && set.has(subscriber)) subscriber.sendEncoded(encodeMessage('routing', this.table(region)))
      })
    }
  }

  unsubscribe(region: string, subscriber: RoutingSubscriber): void {
    const set = this.subscribers.get(region)
    if (set?.delete(subscriber) && set.size === 0) this.subscribers.delete(region)
  }

  /** Node `id`'s drain order changed: its region's table is computed (and pushed) again. */
  drainChanged(id: string): void {
    const node = this.registry.view(id)
    if (node?.role === 'live') this.markDirty(node.region)
  }

  /** The registry was reset (a seed that just took the lead): every table is computed again from what re-registers. */
  invalidate(): void {
    for (const region of this.tables.keys()) this.markDirty(region)
  }

  close(): void {
    this.closed = true
    this.subscribers.clear()
  }

  private noteChange(change: NodeChange): void {
    const { node, before } = change
    if (node.role === 'live') {
      if (change.reason === 'timeout' || (!change.removed && node.health === 'suspect')) this.lost.set(node.id, node.region)
      else this.lost.delete(node.id)
      for (const peer of change.lostPeers ?? []) this.lost.set(peer, node.region)
    }
    if (node.role === 'live') this.markDirty(node.region)
    if (before && before.role === 'live') this.markDirty(before.region)
  }

  private markDirty(region: string): void {
    this.dirty.add(region)
    if (!this.flushQueued) {
      // Coalesce: a sweep that evicts many nodes yields one push per region.
      this.flushQueued = true
      queueMicrotask(() => this.flush())
    }
  }

  private flush(): void {
    this.flushQueued = false
    for (const region of this.dirty) {
      const nodes = this.compute(region)
      const previous = this.tables.get(region)
      const lost = this.leftLost(region, previous?.nodes ?? [], nodes)
      if (previous && sameNodes(previous.nodes, nodes)) continue
      const table: RoutingTable = { region, version: this.nextVersion(), nodes }
      if (lost.length > 0) table.lost = lost
      this.tables.set(region, table)
      if (!this.registry.inGrace && !this.closed) this.push(table)
    }
    this.dirty.clear()
  }

  private pushAll(): void {
    this.flush()
    for (const region of this.subscribers.keys()) this.push(this.table(region))
  }

  private push(table: RoutingTable): void {
    const set = this.subscribers.get(table.region)
    if (set === undefined) return
    const frame = encodeMessage('routing', table)
    for (const subscriber of set) subscriber.sendEncoded(frame)
  }

  private compute(region: string): RoutingTable['nodes'] {
    const nodes: RoutingTable['nodes'] = []
    for (const r of this.registry.records()) {
      if (r.role !== 'live' || r.region !== region || !servesTraffic(r) || this.drained(r.id)) continue
      nodes.push({ id: r.id, address: r.address, port: r.port, ...(r.livePeers !== undefined ? { peers: copyLivePeers(r.livePeers) } : {}) })
    }
    return nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  /** The nodes and peers of `before` not in `after` that the seed lost: they hand nothing over (roles/live/handover.ts). Forgets the region's lost ones. */
  private leftLost(region: string, before: RoutingTable['nodes'], after: RoutingTable['nodes']): string[] {
    const lost: string[] = []
    for (const [id, r] of this.lost) {
      if (r !== region) continue
      this.lost.delete(id)
      if (lists(before, id) && !lists(after, id)) lost.push(id)
    }
    return lost
  }

  /** Milliseconds since the epoch, bumped when two changes share a millisecond. */
  private nextVersion(): number {
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1)
    return this.lastVersion
  }
}

/** Whether `id` is one of `nodes` or one of their Live peers. */
const lists = (nodes: RoutingTable['nodes'], id: string): boolean => nodes.some((n) => n.id === id || n.peers?.some((p) => p.id === id) === true)

function sameNodes(a: RoutingTable['nodes'], b: RoutingTable['nodes']): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!
    const y = b[i]!
    if (x.id !== y.id || x.address !== y.address || x.port !== y.port || !sameLivePeers(x.peers, y.peers)) return false
  }
  return true
}
