/**
 * Drain orders kept by the seed (docs/meta-protocol.md, "Drain"). An order
 * is written to the datastore (kind `cluster`, key `drain/<nodeId>`) before
 * it is answered, loaded again when the seed starts, pushed to the node
 * over its meta link at once and again every time the node registers. So a
 * drained node stays drained across restarts of the node and of the seed:
 * unlike a load balancer's runtime admin state, which a reload forgets
 * (haproxy/haproxy#199).
 *
 * Routing asks {@link SeedDrains.isDrained} for every Live node: a drained
 * node is out of the routing table from the moment the order is taken, not
 * from its next heartbeat (which then says `draining` too).
 *
 * Changes run one at a time, so the datastore and the in-memory map agree
 * and a push always carries the state just written.
 */
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import { listAll, type Datastore } from '../lib/storage/datastore.js'
import {
  asDrainOrder, DRAIN_KEY_PREFIX, drainKey, parseDrainRequest, parseNodeId, type DrainOrder, type DrainPush,
} from '../lib/transport/drain-order.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { adminOnly } from './admin-only.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap, type NodeView } from '../lib/transport/meta-shapes.js'
import type { Registry } from './registry.js'

export interface SeedDrainsOptions {
  readonly datastore: Datastore
  readonly registry: Registry
  readonly log: Logger
  /** A node's order was set or lifted (routing recomputes its region). */
  readonly onChanged: (id: string) => void
}

export interface SeedDrains {
  readonly handlers: [string, RequestHandler<MetaPeer>][]
  isDrained(id: string): boolean
  /** The view with its `drain` field filled in. */
  decorate(view: NodeView): NodeView
  /** `peer` registered as node `id`: it gets its order now (when drained) and every change from now on. */
  registered(id: string, peer: MetaPeer): void
  peerClosed(peer: MetaPeer): void
  /** Reads every stored order again (a seed that just took the lead). */
  reload(): Promise<void>
}

/** Loads every stored order; rejects when the datastore cannot be read (the seed does not start without it). */
export async function createSeedDrains({ datastore, registry, log, onChanged }: SeedDrainsOptions): Promise<SeedDrains> {
  const orders = new Map<string, DrainOrder>()
  async function load(): Promise<void> {
    const loaded = new Map<string, DrainOrder>()
    for await (const { key, value } of listAll(datastore, 'cluster', DRAIN_KEY_PREFIX)) {
      const order = asDrainOrder(value)
      const id = key.slice(DRAIN_KEY_PREFIX.length)
      if (order === null) log.warn({ key }, 'a stored drain order is malformed: ignored (admin undrain removes it)')
      else loaded.set(id, order)
    }
    // Taken over with an empty registry (seed/seed.ts): nobody is routed yet, so nothing to re-route.
    orders.clear()
    for (const [id, order] of loaded) orders.set(id, order)
    if (orders.size > 0) log.info({ nodes: [...orders.keys()] }, 'drained nodes loaded')
  }
  await load()
  // The peer each node id registered over, to push its order to.
  const peers = new Map<string, MetaPeer>()
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work)
    queue = run.catch(() => {})
    return run
  }

  function push(id: string): void {
    const body: DrainPush = { order: orders.get(id) ?? null }
    peers.get(id)?.session.send('drain', body)
  }

  const drain: RequestHandler<MetaPeer> = (body, peer) => {
    adminOnly(peer, 'node.drain')
    const { id, then, graceMs, force } = parseDrainRequest(body)
    return serial(async () => {
      const node = registry.view(id)
      if (node === undefined && !force && !orders.has(id)) {
        throw createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'registered', id, hint: 'admin nodes lists them; force drains an id that is not registered now' })
      }
      // The seed serves the meta port every drain goes through: it stops with SIGTERM, not by order.
      if (node?.role === 'seed') throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'id', reason: `'${id}' names a seed: seeds are not drained (stop it with SIGTERM)` })
      // A restart order names the process to restart, so the seed can tell when a new one registers.
      if (then === 'restart' && node === undefined) throw createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'registered', id, hint: 'only a running node can be restarted' })
      const order: DrainOrder = then === 'restart' ? { then, graceMs, at: Date.now(), restartOf: node!.startedAt } : { then, graceMs, at: Date.now() }
      await datastore.put('cluster', drainKey(id), { ...order })
      const previous = orders.get(id) ?? null
      orders.set(id, order)
      log.info({ id, ...order, registered: node !== undefined, previous }, 'node drained')
      onChanged(id)
      push(id)
      return { id, order, previous, registered: node !== undefined }
    })
  }

  const undrain: RequestHandler<MetaPeer> = (body, peer) => {
    adminOnly(peer, 'node.undrain')
    if (!isMap(body)) throw createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'body', reason: 'must be a map' })
    const id = parseNodeId(body['id'])
    return serial(async () => {
      const previous = orders.get(id) ?? null
      // Not drained; a stored record that did not parse at start (ignored then) is removed all the same.
      if (previous === null) {
        if (await datastore.delete('cluster', drainKey(id))) log.info({ id }, 'a malformed stored drain order removed')
        return { id, undrained: false, previous }
      }
      await datastore.delete('cluster', drainKey(id))
      orders.delete(id)
      log.info({ id, previous }, 'node undrained')
      onChanged(id)
      push(id)
      return { id, undrained: true, previous, registered: registry.view(id) !== undefined }
    })
  }

  const list: RequestHandler<MetaPeer> = (_body, peer) => {
    adminOnly(peer, 'node.drains')
    return { drains: [...orders].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, order]) => ({ id, ...order, registered: registry.view(id) !== undefined })) }
  }

  return {
    handlers: [['node.drain', drain], ['node.undrain', undrain], ['node.drains', list]],
    isDrained: (id) => orders.has(id),
    decorate: (view) => ({ ...view, drain: orders.get(view.id) ?? null }),
    registered(id, peer) {
      peers.set(id, peer)
      const order = orders.get(id)
      if (order === undefined) return
      // A new process of a node under a restart order: the restart is done, so the order is lifted
      // (before it is ever pushed) and the node comes back in service like any node that starts.
      const startedAt = registry.view(id)?.startedAt
      if (order.then === 'restart' && startedAt !== order.restartOf) {
        void serial(async () => {
          if (orders.get(id) !== order) return
          await datastore.delete('cluster', drainKey(id))
          orders.delete(id)
          log.info({ id, order, startedAt }, 'node restarted under its restart order: order lifted, back in service')
          onChanged(id)
          push(id)
        }).catch((err: unknown) => log.error({ err, id }, 'could not lift a fulfilled restart order (admin undrain lifts it)'))
        return
      }
      push(id)
    },
    peerClosed(peer) {
      // Not by peer.nodeId: an evicted peer has lost it before its connection closes.
      for (const [id, held] of peers) if (held === peer) peers.delete(id)
    },
    reload: () => serial(load),
  }
}
