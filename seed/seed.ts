/**
 * The seed: meta server + registry + routing, wired through one literal
 * op→handler table per message kind (docs/meta-protocol.md, "Requests to the
 * seed" and "One-way messages").
 */
import type { Registry as MetricsRegistry } from 'prom-client'
import type { NodeConfig } from '../lib/core/config.js'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import type { Handle } from '../lib/process/role.js'
import { encodeMessage } from '../lib/transport/meta-frames.js'
import type { MessageHandler, RequestHandler } from '../lib/transport/meta-session.js'
import { heartbeatProblem, isMap, parseNodeInfo, parseRegion, type HeartbeatBody, type NodeView } from '../lib/transport/meta-shapes.js'
import { FILES_CHANGED_ALL, parseFilesChanged } from '../lib/transport/files-changed.js'
import { startMetaServer, type MetaPeer, type MetaServerOptions } from '../lib/transport/meta-server.js'
import { blobStoreConfig, createBlobStore } from '../lib/storage/blob-store.js'
import { createSeedBuilds } from './builds.js'
import { fenceBuildWrites } from './build-records.js'
import { datastoreHandlers } from './datastore-ops.js'
import { openSeedStores } from './stores.js'
import { taskHandlers } from './tasks-ops.js'
import { mailHandoffHandlers } from './mail-handoff-ops.js'
import { mailInboundHandlers } from './mail-inbound-ops.js'
import { uploadHandlers } from './upload-ops.js'
import { createInboundSweep, mailSweepInterval } from './mail-inbound-sweep.js'
import { createOutboundSweep } from './mail-outbound-sweep.js'
import { createSeedDrains } from './drains.js'
import { Registry, type RegistryLink } from './registry.js'
import { Routing } from './routing.js'
import { createSeedVhosts } from './vhosts.js'
import { createSeedMaintenance } from './maintenance.js'
import { createNodeControl } from './node-control.js'
import { OpLatency, registerSeedMetrics } from './seed-metrics.js'
import { soleLeadership, startLeaseLeadership, type Leadership } from './leadership.js'

export interface SeedOptions {
  readonly config: NodeConfig
  readonly log: Logger
  /** Meta-port deadlines and limits; the documented defaults apply when absent (tests shorten them). */
  readonly meta?: Pick<MetaServerOptions, 'handshakeTimeoutMs' | 'frameTimeoutMs' | 'idleTimeoutMs' | 'maxUnauthenticated'>
  /** The node's metrics registry: the seed adds its `espra_seed_…` series (./seed-metrics.ts). */
  readonly metrics?: MetricsRegistry
}

export interface SeedHandle extends Handle {
  /** The meta port actually bound (useful with port 0). */
  readonly port: number
  readonly registry: Registry
  /** Who leads (always this seed with the embedded datastore). */
  readonly leadership: Leadership
}

/** How often rows of the app's tables past their TTL are deleted (they read as absent at once). */
const APP_ROWS_SWEEP_MS = 60_000

const badRequest = (field: string, reason: string) => createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason })

/** Before the first look at the lease (the meta port must be bound to know the address to publish): nobody leads here. */
const NOT_YET_LOOKED: Leadership = { ...soleLeadership('', ''), fenced: true, isLeader: () => false, view: () => ({ leader: false, epoch: null, holder: null, address: null }) }

/** Where other nodes reach this seed's meta port: its bind address when it binds one, else its advertised address. */
function metaAddress(config: NodeConfig, port: number): string {
  const host = config.bind === '0.0.0.0' || config.bind === '::' ? config.advertise : config.bind
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Ops only the leader serves (registry, routing, pushes and what writes them); the rest (ds, tasks, mail, ping) every seed serves. */
function leaderOnly(handlers: Iterable<[string, RequestHandler<MetaPeer>]>, leadership: () => Leadership): [string, RequestHandler<MetaPeer>][] {
  return [...handlers].map(([op, handler]) => [op, (body, peer) => {
    const lead = leadership()
    if (!lead.isLeader()) {
      const view = lead.view()
      throw createError('ESPRA_ERR_SEED_NOT_LEADER', {
        reason: view.address === null ? 'no seed holds the lease right now; retry shortly' : `the leader is ${view.holder} at ${view.address} (epoch ${view.epoch})`,
        leader: view.address, epoch: view.epoch, op,
      })
    }
    return handler(body, peer)
  }])
}

/** Starts the seed's meta port on `config.bind`:`config.metaPort`. */
export async function startSeed({ config, log, meta = {}, metrics }: SeedOptions): Promise<SeedHandle> {
  // Durable records and the task queues: embedded (LMDB under <data-dir>/seed) or PostgreSQL (--datastore, --tasks).
  const stores = await openSeedStores(config, log)
  const { datastore, appTasks, mailQueue } = stores
  // Who leads: nobody here until the first look at the lease (after the meta port is bound); the sole seed when embedded.
  let leadership: Leadership = NOT_YET_LOOKED
  const registry = new Registry({ heartbeatTimeoutMs: config.heartbeatTimeout, graceMs: config.seedGrace, mayEvict: () => leadership.isLeader() })
  // App builds: bytes in the blob store (--blob-store), records in the datastore.
  const blobs = await createBlobStore(blobStoreConfig(config))
  const builds = await createSeedBuilds({ blobs, datastore, registry, log, maxFrame: config.maxFrame, initTimeoutMs: config.initTimeout, isLeader: () => leadership.isLeader(),
    // Several seeds: a build record is written only under the epoch this seed leads with (a paused leader's late write is refused).
    ...(stores.putFenced !== null ? { fenced: fenceBuildWrites(stores.putFenced, config.nodeId, () => leadership) } : {}) }).catch(async (err: unknown) => {
    registry.close()
    await Promise.all([blobs.close(), stores.close()])
    throw err
  })
  // Drain orders (admin drain): loaded now, so a drained node is out of routing from its first registration.
  const drains = await createSeedDrains({ datastore, registry, log, onChanged: (id) => routing.drainChanged(id) }).catch(async (err: unknown) => {
    builds.close()
    registry.close()
    await Promise.all([blobs.close(), stores.close()])
    throw err
  })
  const routing = new Routing(registry, drains.isDrained)
  // Nodes are back once the grace ends (at start, or after taking the lead): an unfinished deploy is staged again then.
  registry.onGraceEnd(() => void builds.resumeStaging())
  // Vhost mappings: written here only, and every change pushed to fileservers (vhosts.changed).
  const vhosts = createSeedVhosts({ datastore, log })
  // Planned maintenance: kept in the datastore, pushed to every registered node (seed/maintenance.ts).
  const maintenance = createSeedMaintenance({ datastore, log })
  const eventSubscribers = new Set<MetaPeer>()
  // Fileservers: told when blob-store keys appear or change (files.changed), to clear their negative caches.
  const fileSubscribers = new Set<MetaPeer>()
  const routingRegions = new Map<MetaPeer, Set<string>>()
  const links = new WeakMap<MetaPeer, RegistryLink>()
  const registered = { seed: config.nodeId, heartbeatInterval: config.heartbeatInterval, heartbeatTimeout: config.heartbeatTimeout }

  // One link object per peer, made on first register: the registry closes it on eviction or replacement.
  function linkOf(peer: MetaPeer): RegistryLink {
    let link = links.get(peer)
    if (link === undefined) {
      link = {
        close(reason) {
          const node = peer.nodeId ?? peer.remote
          peer.nodeId = null
          peer.session.destroy(reason === 'replaced'
            ? createError('ESPRA_ERR_META_REPLACED', { id: node })
            : createError('ESPRA_ERR_META_IDLE', { peer: node, reason: `no heartbeat for ${config.heartbeatTimeout} ms; evicted` }))
        },
      }
      links.set(peer, link)
    }
    return link
  }

  /** Tells every subscribed fileserver that blob-store keys appeared or changed; how many were told. */
  function pushFilesChanged(keys: readonly string[]): number {
    const frame = encodeMessage('files.changed', { keys })
    for (const peer of fileSubscribers) peer.session.sendEncoded(frame)
    return fileSubscribers.size
  }

  // node.reload (admin) and node.reloaded (the node's answer): rolling restarts.
  const nodeControl = createNodeControl({ registry, log, peers: () => server.peers })

  const datastoreOps = new OpLatency()
  // Old inbound mail: removed by the leader after its retention (seed/mail-inbound-sweep.ts).
  let widestWindow = config.mailDedupeWindow
  const inboundSweep = createInboundSweep({
    datastore, tasks: appTasks, blobs, log,
    retentionMs: config.mailInboundRetention, failedRetentionMs: config.mailInboundFailedRetention,
    dedupeWindowMs: () => widestWindow,
  })
  const outboundSweep = createOutboundSweep({ datastore, blobs, log, retentionMs: config.mailOutboundRetention })
  const taskOps = new OpLatency()
  // Seeds in the registry say whether they lead (the leader knows the lease; every other seed follows it).
  const decorateSeed = (view: NodeView): NodeView => view.role !== 'seed' ? view : { ...view, leader: view.id === config.nodeId, epoch: leadership.view().epoch }
  const leaderHandlers = new Map<string, RequestHandler<MetaPeer>>([
    ['register', (body, peer) => {
      if (peer.kind !== 'node') throw badRequest('peer', 'must be a node: only node peers register')
      const info = parseNodeInfo(body)
      if (peer.id !== null && peer.id !== info.id) throw badRequest('id', `must be '${peer.id}', the id this connection authenticated as (got '${info.id}')`)
      if (peer.nodeId !== null && peer.nodeId !== info.id) throw badRequest('id', `must be '${peer.nodeId}', the id this connection registered already (got '${info.id}')`)
      registry.register(info, linkOf(peer))
      peer.nodeId = info.id
      maintenance.registered(peer)
      drains.registered(info.id, peer)
      return registered
    }],
    ['deregister', (_body, peer) => {
      if (peer.nodeId === null) throw createError('ESPRA_ERR_META_NOT_REGISTERED')
      registry.deregister(peer.nodeId, linkOf(peer))
      peer.nodeId = null
      return {}
    }],
    ['nodes', (body) => {
      const filter = isMap(body) ? body : {}
      const role = filter['role']
      if (role !== undefined && typeof role !== 'string') throw badRequest('role', 'must be a string')
      const region = filter['region'] === undefined ? undefined : parseRegion(filter['region'])
      return registry.list({ ...(role !== undefined ? { role } : {}), ...(region !== undefined ? { region } : {}) }).map(drains.decorate).map(decorateSeed)
    }],
    ['routing', (body) => routing.table(parseRegion(isMap(body) ? body['region'] : undefined))],
    ['subscribe', (body, peer) => {
      if (!isMap(body)) throw badRequest('body', 'must be a map')
      const events = body['events']
      if (events !== undefined && typeof events !== 'boolean') throw badRequest('events', 'must be a boolean')
      const wantsBuilds = body['builds']
      if (wantsBuilds !== undefined && typeof wantsBuilds !== 'boolean') throw badRequest('builds', 'must be a boolean')
      const wantsFiles = body['files']
      if (wantsFiles !== undefined && typeof wantsFiles !== 'boolean') throw badRequest('files', 'must be a boolean')
      const wantsVhosts = body['vhosts']
      if (wantsVhosts !== undefined && typeof wantsVhosts !== 'boolean') throw badRequest('vhosts', 'must be a boolean')
      const region = body['routing'] === undefined ? undefined : parseRegion(body['routing'], 'routing')
      if (region !== undefined) {
        let regions = routingRegions.get(peer)
        if (regions === undefined) routingRegions.set(peer, (regions = new Set()))
        regions.add(region)
        routing.subscribe(region, peer.session)
      }
      if (events === true) eventSubscribers.add(peer)
      if (wantsBuilds === true) builds.subscribe(peer)
      if (wantsFiles === true) {
        fileSubscribers.add(peer)
        // Whatever was announced while this subscriber was away is lost: it forgets every remembered miss.
        peer.session.send('files.changed', FILES_CHANGED_ALL)
      }
      if (wantsVhosts === true) vhosts.subscribe(peer)
      return {}
    }],
    ['files.changed', (body) => ({ subscribers: pushFilesChanged(parseFilesChanged(body).keys) })],
    ...uploadHandlers(datastore, pushFilesChanged, stores.once.datastore),
    ...builds.handlers,
    ...vhosts.handlers,
    ...maintenance.handlers,
    ...nodeControl.handlers,
    ...drains.handlers,
  ])
  const handlers = new Map<string, RequestHandler<MetaPeer>>([
    ...leaderOnly(leaderHandlers, () => leadership),
    // Every seed: liveness, who leads, and the durable ops (they go to the database, whichever seed serves them).
    ['ping', () => ({ now: Date.now() })],
    ['leader', () => ({ seed: config.nodeId, fenced: leadership.fenced, leaseMs: leadership.leaseMs, ...leadership.view() })],
    ...datastoreOps.timed(datastoreHandlers(datastore, config.maxFrame, stores.once.datastore)),
    ...taskOps.timed(taskHandlers(appTasks, config.maxFrame, 'tasks', stores.once.tasks)),
    ...taskOps.timed(taskHandlers(mailQueue, config.maxFrame, 'mailq', stores.once.tasks)),
    ...mailInboundHandlers(datastore, appTasks, (ms) => (widestWindow = Math.max(widestWindow, ms))),
    ...datastoreOps.timed(mailHandoffHandlers(datastore, { queue: appTasks, once: stores.once.tasks })),
  ])

  const messages = new Map<string, MessageHandler<MetaPeer>>([
    ['heartbeat', (body, peer) => {
      const problem = heartbeatProblem(body, peer.nodeId)
      if (problem !== null) throw badRequest('heartbeat', problem.replace(/^heartbeat /, ''))
      // A heartbeat racing ahead of `register` after a reconnect is harmless: ignore it.
      if (peer.nodeId !== null) registry.heartbeat(peer.nodeId, linkOf(peer), body as HeartbeatBody)
    }],
  ])

  registry.onEvent((event) => {
    if (eventSubscribers.size === 0) return
    const frame = encodeMessage('event', event)
    for (const peer of eventSubscribers) peer.session.sendEncoded(frame)
  })

  const server = await startMetaServer({
    ...meta, host: config.bind, port: config.metaPort, secret: config.secret, seedId: config.nodeId,
    maxFrame: config.maxFrame, log, handlers, messages,
    // PostgreSQL: every push carries the epoch, none leaves a seed that does not lead; the welcome says who leads.
    ...(stores.postgres !== null ? {
      pushEpoch: () => leadership.pushEpoch(),
      welcome: () => {
        const view = leadership.view()
        // sharedTasks: the queues are rows every seed reads, so nodes may send `tasks.*`/`mailq.*` to any seed.
        return { lead: { leader: view.leader, epoch: view.epoch, address: view.address, sharedTasks: appTasks.backend === 'postgres' } }
      },
    } : {}),
    onPeerClosed(peer) {
      if (peer.nodeId !== null) registry.disconnected(peer.nodeId, linkOf(peer))
      eventSubscribers.delete(peer)
      fileSubscribers.delete(peer)
      vhosts.peerClosed(peer)
      maintenance.peerClosed(peer)
      drains.peerClosed(peer)
      builds.peerClosed(peer)
      nodeControl.peerClosed(peer)
      for (const region of routingRegions.get(peer) ?? []) routing.unsubscribe(region, peer.session)
      routingRegions.delete(peer)
    },
  }).catch(async (err: unknown) => {
    maintenance.close()
    builds.close()
    registry.close()
    await Promise.all([blobs.close(), stores.close()])
    throw err
  })
  const address = metaAddress(config, server.port)
  if (stores.leaseDb === null) leadership = soleLeadership(config.nodeId, address)
  else {
    leadership = await startLeaseLeadership({
      db: stores.leaseDb, holder: config.nodeId, address, leaseMs: config.seedLease, log,
      onLead(epoch) {
        // Soft state starts over from re-registrations (nobody evicted during the grace, no routing push before
        // it ends); durable state is read from the database, where the previous leader wrote it.
        registry.reset(config.seedGrace)
        routing.invalidate()
        Promise.all([builds.reload(), drains.reload(), maintenance.reload()]).then(
          () => log.info({ epoch, graceMs: config.seedGrace }, 'leader state loaded from the datastore; nodes re-registering'),
          (err: unknown) => log.error({ err, epoch }, 'leader state could not be read from the datastore'),
        )
      },
      onStepDown(reason) {
        // Nodes and every subscriber go to the leader (they reconnect and are sent on); an admin link that only
        // reads and writes records stays: every seed serves those.
        registry.reset(0)
        const view = leadership.view()
        const err = createError('ESPRA_ERR_SEED_NOT_LEADER', { reason: `it stopped leading (${reason}); reconnect to the leader`, leader: view.address })
        for (const peer of [...server.peers]) {
          if (peer.kind === 'node' || eventSubscribers.has(peer) || fileSubscribers.has(peer) || routingRegions.has(peer)) peer.session.destroy(err)
        }
      },
    }).catch((err: unknown) => {
      server.destroy()
      throw err
    })
  }
  if (metrics) registerSeedMetrics(metrics, { nodes: registry, peers: () => server.peers, queues: { app: appTasks, mail: mailQueue }, datastore: datastoreOps, inboundSweep: inboundSweep.totals, outboundSweep: outboundSweep.totals, taskOps })
  let sweeping = false
  const sweeper = setInterval(() => {
    if (sweeping || !leadership.isLeader()) return
    sweeping = true
    stores.removeExpiredRows(Date.now()).then(
      (removed) => removed > 0 && log.debug({ removed }, 'expired app table rows deleted'),
      (err: unknown) => log.warn({ err }, 'expired app table rows not swept'),
    ).finally(() => (sweeping = false))
  }, APP_ROWS_SWEEP_MS).unref()
  let mailSweeping = false
  const mailSweeper = setInterval(() => {
    if (mailSweeping || !leadership.isLeader()) return
    mailSweeping = true
    inboundSweep.pass().catch((err: unknown) => log.warn({ err }, 'inbound mail not swept (the next pass tries again)'))
      .then(() => outboundSweep.pass()).catch((err: unknown) => log.warn({ err }, 'outbound mail not swept (the next pass tries again)'))
      .finally(() => (mailSweeping = false))
  }, mailSweepInterval(Math.min(config.mailInboundRetention, config.mailOutboundRetention), config.mailInboundFailedRetention)).unref()
  log.info({ port: server.port, graceMs: config.seedGrace, heartbeatTimeoutMs: config.heartbeatTimeout, leader: leadership.isLeader(), epoch: leadership.view().epoch }, 'seed started')

  return {
    port: server.port,
    registry,
    get leadership() {
      return leadership
    },
    async close() {
      clearInterval(sweeper)
      clearInterval(mailSweeper)
      // First: a follower takes over at once instead of waiting for the lease to run out.
      await leadership.close()
      maintenance.close()
      nodeControl.close()
      routing.close()
      builds.close()
      registry.close()
      await server.close()
      await Promise.all([blobs.close(), stores.close()])
    },
    destroy(err?: Error) {
      clearInterval(sweeper)
      clearInterval(mailSweeper)
      void leadership.close()
      maintenance.close()
      nodeControl.close()
      routing.close()
      builds.close()
      registry.close()
      server.destroy(err)
      void blobs.close()
      void stores.close()
    },
  }
}
