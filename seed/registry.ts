/**
 * The node registry and failure detector (docs/meta-protocol.md, "Failure
 * detection"). Seed state is soft: it is rebuilt from re-registrations.
 *
 * Scaling: records sit in one list ordered by last heartbeat (a heartbeat
 * moves its record to the tail in O(1)), so one interval sweep only looks at
 * the head of the list, however many nodes there are. No timer per node.
 */
import { copyLivePeers, type HeartbeatBody, type LivePeer, type NodeEvent, type NodeHealth, type NodeInfo, type NodeLoad, type NodeView } from '../lib/transport/meta-shapes.js'

/** The connection a node registered over; the registry closes it when the node is evicted or replaced. */
export interface RegistryLink {
  close(reason: 'replaced' | 'timeout'): void
}

export interface RegistryOptions {
  readonly heartbeatTimeoutMs: number
  /** Nobody is evicted for this long after start (nodes are re-registering). */
  readonly graceMs: number
  /** Sweep period; default a tenth of the timeout, at most 100 ms. */
  readonly sweepMs?: number
  /**
   * Asked before every sweep: only the leading seed evicts. A leader that
   * wakes from a pause past its lease must not evict nodes whose heartbeats
   * are still unread in its sockets (they went to the new leader).
   */
  readonly mayEvict?: () => boolean
}

/** Where a node was before a change, so routing can tell which regions it touched. */
export interface NodeChange {
  readonly node: Readonly<NodeRecord>
  readonly before: { readonly role: string; readonly region: string; readonly health: NodeHealth; readonly children: number } | null
  readonly removed: boolean
  /** Why a removed node left: it said so (`deregistered`), or it went silent past the heartbeat timeout (`timeout`). */
  readonly reason?: 'deregistered' | 'timeout'
  /** With a change of the node's Live peers: those it reported dead (`livePeersLost`); seed/routing.ts names the ones that left its table. */
  readonly lostPeers?: readonly string[]
}

/** A registry entry; `records()` hands these out read-only. */
export interface NodeRecord extends Omit<NodeView, 'heartbeatAgeMs' | 'connected'> {
  link: RegistryLink | null
  /** performance.now() of the last register or heartbeat: immune to wall-clock jumps. */
  seenAt: number
  prev: NodeRecord | null
  next: NodeRecord | null
}

export class Registry {
  private readonly nodes = new Map<string, NodeRecord>()
  private head: NodeRecord | null = null
  private tail: NodeRecord | null = null
  private readonly timeoutMs: number
  private readonly mayEvict: () => boolean
  private readonly sweeper: NodeJS.Timeout
  private graceTimer: NodeJS.Timeout | null
  private graceValue: boolean
  private readonly eventListeners: ((event: NodeEvent) => void)[] = []
  private readonly changeListeners: ((change: NodeChange) => void)[] = []
  private readonly graceListeners: (() => void)[] = []

  constructor(opts: RegistryOptions) {
    this.timeoutMs = opts.heartbeatTimeoutMs
    this.mayEvict = opts.mayEvict ?? (() => true)
    this.graceValue = opts.graceMs > 0
    this.graceTimer = this.graceValue ? setTimeout(() => this.endGrace(), opts.graceMs).unref() : null
    this.sweeper = setInterval(() => this.sweep(), opts.sweepMs ?? Math.min(100, Math.ceil(opts.heartbeatTimeoutMs / 10))).unref()
  }

  get size(): number {
    return this.nodes.size
  }

  /** True while the start-up grace lasts. */
  get inGrace(): boolean {
    return this.graceValue
  }

  onEvent(listener: (event: NodeEvent) => void): void {
    this.eventListeners.push(listener)
  }

  /** Called for every change that can alter routing: join, leave, health, address. */
  onChange(listener: (change: NodeChange) => void): void {
    this.changeListeners.push(listener)
  }

  onGraceEnd(listener: () => void): void {
    this.graceListeners.push(listener)
  }

  /**
   * Adds or refreshes a node. When another link holds the id, the new one
   * wins and the old link is closed.
   */
  register(reported: NodeInfo, link: RegistryLink): void {
    const now = performance.now()
    const { livePeersLost, ...info } = reported
    const old = this.nodes.get(info.id)
    if (old === undefined) {
      const record: NodeRecord = {
        ...info, load: { connections: 0, rps: 0, rssBytes: 0, lagMs: 0 }, registeredAt: Date.now(),
        link, seenAt: now, prev: null, next: null,
      }
      this.nodes.set(info.id, record)
      this.append(record)
      this.emit('joined', record)
      this.changed(record, null, false)
      return
    }
    const before = { role: old.role, region: old.region, health: old.health, children: old.children }
    const moved = old.address !== info.address || old.port !== info.port || old.role !== info.role || old.region !== info.region
    const previousLink = old.link
    const peersMoved = !sameLivePeers(old.livePeers, info.livePeers)
    const lostPeers = peersMoved ? livePeersLost ?? [] : []
    Object.assign(old, info)
    if (info.elb === undefined) delete old.elb
    if (info.livePeers === undefined) delete old.livePeers
    old.link = link
    this.touch(old, now)
    if (previousLink && previousLink !== link) previousLink.close('replaced')
    if (before.health !== old.health) this.emit('health', old, previousLink === null ? 'reconnected' : undefined)
    if (moved || peersMoved || before.health !== old.health || (before.children === 0) !== (old.children === 0)) this.changed(old, before, false, undefined, lostPeers)
  }

  /** Applies a heartbeat from `link`; false when that link holds no registered node. */
  heartbeat(id: string, link: RegistryLink, body: HeartbeatBody): boolean {
    const record = this.nodes.get(id)
    if (record === undefined || record.link !== link) return false
    this.touch(record, performance.now())
    const before = { role: record.role, region: record.region, health: record.health, children: record.children }
    record.children = body.children
    record.build = body.build
    const load = record.load
    load.connections = body.load.connections
    load.rps = body.load.rps
    load.rssBytes = body.load.rssBytes
    load.lagMs = body.load.lagMs
    if (body.load.pendingUploads !== undefined) load.pendingUploads = body.load.pendingUploads
    else delete load.pendingUploads
    const byChild = body.load.byChild
    if (byChild !== undefined) load.byChild = byChild.map((c) => ({ slot: c.slot, pid: c.pid, connections: c.connections, rps: c.rps, rssBytes: c.rssBytes, lagMs: c.lagMs }))
    else delete load.byChild
    const app = body.load.app
    if (app !== undefined) load.app = { build: app.build, requests: app.requests, errors5xx: app.errors5xx, crashes: app.crashes, latency: [...app.latency] }
    else delete load.app
    if (body.elb !== undefined) record.elb = { state: body.elb.state, targetGroup: body.elb.targetGroup }
    else delete record.elb
    const peersMoved = !sameLivePeers(record.livePeers, body.livePeers)
    const lostPeers = peersMoved ? body.livePeersLost ?? [] : []
    if (peersMoved) {
      if (body.livePeers !== undefined) record.livePeers = copyLivePeers(body.livePeers)
      else delete record.livePeers
    }
    if (record.health !== body.health) {
      record.health = body.health
      this.emit('health', record)
      this.changed(record, before, false, undefined, lostPeers)
    } else if ((before.children === 0) !== (body.children === 0) || peersMoved) {
      // Whether any child serves decides if a degraded node is routed, and its Live peers are listed (seed/routing.ts).
      this.changed(record, before, false, undefined, lostPeers)
    }
    return true
  }

  /** The node leaves at once (`left`, reason `deregistered`). */
  deregister(id: string, link: RegistryLink): boolean {
    const record = this.nodes.get(id)
    if (record === undefined || record.link !== link) return false
    this.remove(record, 'deregistered')
    return true
  }

  /** The node's link closed without deregister: suspect at once, out of routing. */
  disconnected(id: string, link: RegistryLink): void {
    const record = this.nodes.get(id)
    if (record === undefined || record.link !== link) return
    record.link = null
    if (record.health === 'suspect') return
    const before = { role: record.role, region: record.region, health: record.health, children: record.children }
    record.health = 'suspect'
    this.emit('health', record, 'disconnected')
    this.changed(record, before, false)
  }

  view(id: string): NodeView | undefined {
    const record = this.nodes.get(id)
    return record && toView(record, performance.now())
  }

  list(filter: { role?: string; region?: string } = {}): NodeView[] {
    const now = performance.now()
    const out: NodeView[] = []
    for (const r of this.nodes.values()) {
      if ((filter.role === undefined || r.role === filter.role) && (filter.region === undefined || r.region === filter.region)) out.push(toView(r, now))
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  /** Every record, for routing to filter; read-only by contract. */
  records(): IterableIterator<Readonly<NodeRecord>> {
    return this.nodes.values()
  }

  /**
   * Forgets every node without events (a seed that stopped leading: its
   * nodes re-register with the leader) and, with `graceMs`, starts a new
   * grace (a seed that just took the lead: nobody is evicted while nodes
   * re-register).
   */
  reset(graceMs: number): void {
    for (const record of this.nodes.values()) record.link = null
    this.nodes.clear()
    this.head = this.tail = null
    if (this.graceTimer) clearTimeout(this.graceTimer)
    this.graceValue = graceMs > 0
    this.graceTimer = this.graceValue ? setTimeout(() => this.endGrace(), graceMs).unref() : null
  }

  close(): void {
    clearInterval(this.sweeper)
    if (this.graceTimer) clearTimeout(this.graceTimer)
  }

  /** Evicts every node silent for the timeout; nothing during grace. */
  sweep(): void {
    if (this.graceValue || !this.mayEvict()) return
    const deadline = performance.now() - this.timeoutMs
    while (this.head !== null && this.head.seenAt <= deadline) {
      const record = this.head
      const link = record.link
      this.remove(record, 'timeout')
      link?.close('timeout')
    }
  }

  private endGrace(): void {
    this.graceValue = false
    this.sweep()
    for (const listener of this.graceListeners) listener()
  }

  private remove(record: NodeRecord, reason: 'deregistered' | 'timeout'): void {
    this.nodes.delete(record.id)
    this.unlink(record)
    record.link = null
    this.emit('left', record, reason)
    this.changed(record, { role: record.role, region: record.region, health: record.health, children: record.children }, true, reason)
  }

  private emit(type: NodeEvent['type'], record: NodeRecord, reason?: string): void {
    if (this.eventListeners.length === 0) return
    const event: NodeEvent = { type, at: Date.now(), node: toView(record, performance.now()) }
    if (reason !== undefined) event.reason = reason
    for (const listener of this.eventListeners) listener(event)
  }

  private changed(node: NodeRecord, before: NodeChange['before'], removed: boolean, reason?: NodeChange['reason'], lostPeers: readonly string[] = []): void {
    const change: NodeChange = { node, before, removed, ...(reason !== undefined ? { reason } : {}), ...(lostPeers.length > 0 ? { lostPeers } : {}) }
    for (const listener of this.changeListeners) listener(change)
  }

  // ---- the list ordered by seenAt ----

  private touch(record: NodeRecord, now: number): void {
    record.seenAt = now
    if (this.tail === record) return
    this.unlink(record)
    this.append(record)
  }

  private append(record: NodeRecord): void {
    record.prev = this.tail
    record.next = null
    if (this.tail) this.tail.next = record
    else this.head = record
    this.tail = record
  }

  private unlink(record: NodeRecord): void {
    if (record.prev) record.prev.next = record.next
    else if (this.head === record) this.head = record.next
    if (record.next) record.next.prev = record.prev
    else if (this.tail === record) this.tail = record.prev
    record.prev = record.next = null
  }
}

function toView(r: NodeRecord, now: number): NodeView {
  const load: NodeLoad = {
    connections: r.load.connections, rps: r.load.rps, rssBytes: r.load.rssBytes, lagMs: r.load.lagMs,
    ...(r.load.pendingUploads !== undefined ? { pendingUploads: r.load.pendingUploads } : {}),
    ...(r.load.byChild !== undefined ? { byChild: r.load.byChild.map((c) => ({ ...c })) } : {}),
    ...(r.load.app !== undefined ? { app: { ...r.load.app, latency: [...r.load.app.latency] } } : {}),
  }
  return {
    id: r.id, role: r.role, region: r.region, address: r.address, port: r.port, metricsPort: r.metricsPort, pid: r.pid,
    version: r.version, children: r.children, childrenWanted: r.childrenWanted, build: r.build, health: r.health,
    startedAt: r.startedAt, heartbeatAgeMs: Math.max(0, Math.round(now - r.seenAt)), load, connected: r.link !== null,
    registeredAt: r.registeredAt,
    ...(r.smtpPort !== undefined ? { smtpPort: r.smtpPort } : {}),
    ...(r.elb !== undefined ? { elb: r.elb } : {}),
    ...(r.livePeers !== undefined ? { livePeers: copyLivePeers(r.livePeers) } : {}),
  }
}

/** Whether two lists of Live peers are the same, in order. */
export function sameLivePeers(a: readonly LivePeer[] | undefined, b: readonly LivePeer[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.length === b.length && a.every((p, i) => p.id === b[i]!.id && p.linkPort === b[i]!.linkPort)
}
