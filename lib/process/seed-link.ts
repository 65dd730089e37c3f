/**
 * A node parent's link to the seed: register on every (re)connect, subscribe
 * to what the role wants, heartbeat, and hand every push to the parent. The
 * node keeps serving with its last state while no seed is reachable.
 *
 * With several seeds that elect a leader (PostgreSQL), datastore ops (`ds.*`)
 * ride a second link, to one seed picked by this node's id: every seed serves
 * them from the database, so they spread over the seeds instead of all going
 * to the leader. Task-queue ops (`tasks.*`, `mailq.*`) ride it too when that
 * seed's welcome says its queues are shared (`--tasks postgres`: rows in the
 * same database). Embedded seeds each keep a store of their own (they elect no
 * leader: their welcome names no epoch), and with `--tasks embedded` each seed
 * keeps its own queues, so with them, and whenever that link is down, those
 * ops go to the leader with everything else.
 */
import { createHash } from 'node:crypto'
import type { NodeConfig } from '../core/config.js'
import type { Logger } from '../core/log.js'
import type { NodeState } from '../core/node-state.js'
import { VERSION } from '../core/version.js'
import { healthWord } from '../http/health.js'
import { createMetaClient, type MetaClient } from '../transport/meta-client.js'
import { copyLivePeers, type ElbView, type HeartbeatBody, type LivePeer, type NodeInfo, type NodeLoad } from '../transport/meta-shapes.js'
import type { Role } from './role.js'

const DEREGISTER_TIMEOUT_MS = 2000

/** `seeds` rotated to start at the one `nodeId` picks (a hash of it), so nodes spread evenly; the rest follow in order. */
export function spreadOrder(seeds: readonly string[], nodeId: string): string[] {
  const first = createHash('sha256').update(nodeId).digest().readUInt32BE(0) % seeds.length
  return [...seeds.slice(first), ...seeds.slice(0, first)]
}

export interface SeedLinkOptions {
  readonly config: NodeConfig
  readonly role: Role
  readonly log: Logger
  readonly startedAt: number
  state(): NodeState
  load(): NodeLoad
  /** The node's place in its ELB target group; null without `--elb-target-group` (or before it is known). */
  elb?(): ElbView | null
  onPush(op: string, body: unknown): void
  /** The link went up or down. */
  onChange(): void
}

export interface SeedLink {
  readonly connected: boolean
  /** Sends a heartbeat now (also on every interval tick). */
  heartbeat(): void
  /** A request to the seed; rejects (e.g. `ESPRA_ERR_META_CLOSED`) while no seed is reachable. */
  request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R>
  /** Leaves the registry; from then on no re-registration and no heartbeats. */
  deregister(): Promise<void>
  close(): Promise<void>
}

/** The seed registers with its own meta port: on loopback unless it is bound to one address only. */
function ownMetaAddress(config: NodeConfig): string {
  const host = config.bind === '0.0.0.0' || config.bind === '::' ? '127.0.0.1' : config.bind
  return host.includes(':') ? `[${host}]:${config.metaPort}` : `${host}:${config.metaPort}`
}

function livePeersOf(state: NodeState): { livePeers?: LivePeer[]; livePeersLost?: string[] } {
  if (state.livePeers === undefined) return {}
  return { livePeers: copyLivePeers(state.livePeers), ...(state.livePeersLost !== undefined ? { livePeersLost: [...state.livePeersLost] } : {}) }
}

export function createSeedLink(opts: SeedLinkOptions): SeedLink {
  const { config, role, log } = opts
  let deregistered = false

  function info(): NodeInfo {
    const state = opts.state()
    return {
      id: config.nodeId,
      role: config.role,
      region: config.region,
      address: config.advertise,
      port: config.port,
      metricsPort: config.metricsPort,
      pid: process.pid,
      version: VERSION,
      children: state.childrenAlive,
      childrenWanted: state.childrenWanted,
      build: state.build,
      health: healthWord(state),
      startedAt: opts.startedAt,
      ...(config.role === 'mail' ? { smtpPort: config.smtpPort } : {}),
      ...elbView(),
      ...livePeersOf(state),
    }
  }

  function elbView(): { elb?: ElbView } {
    const elb = opts.elb?.() ?? null
    return elb ? { elb } : {}
  }

  function heartbeatBody(): HeartbeatBody {
    const state = opts.state()
    return { health: healthWord(state), children: state.childrenAlive, build: state.build, load: opts.load(), ...elbView(), ...livePeersOf(state) }
  }

  const client: MetaClient = createMetaClient({
    // The seed registers with its own meta port like any node, so it shows in the registry too.
    seeds: config.role === 'seed' ? [ownMetaAddress(config)] : config.seed,
    secret: config.secret,
    peer: { kind: 'node', id: config.nodeId },
    maxFrame: config.maxFrame,
    log,
    reconnect: true,
    async onConnect(link) {
      if (deregistered) return
      await link.request('register', info())
      const subscription = role.subscribe?.(config)
      if (subscription) await link.request('subscribe', subscription)
      // A node that routes and has no table yet asks for it outright (the subscription's push follows too).
      const region = subscription?.['routing']
      if (typeof region === 'string' && opts.state().routing === null) {
        const table = await link.request('routing', { region })
        // The subscription's push may come first, and the answer is then an older table (issue #16: a Live node that
        // applied it thought itself unlisted and answered every publish 5031): it is used only while none has arrived.
        if (opts.state().routing === null) opts.onPush('routing', table)
      }
      log.info('registered with the seed')
    },
    onPush: (op, body) => opts.onPush(op, body),
  })
  client.on('connected', opts.onChange)
  client.on('disconnected', opts.onChange)
  const data: MetaClient | null = config.role === 'seed' || config.seed.length < 2 ? null : createMetaClient({
    seeds: spreadOrder(config.seed, config.nodeId), secret: config.secret, peer: { kind: 'node', id: config.nodeId },
    maxFrame: config.maxFrame, log: log.child({ link: 'datastore' }), reconnect: true, followLeader: false,
  })
  const linkFor = (op: string): MetaClient => {
    if (data === null || !data.connected || data.epoch === null) return client
    if (op.startsWith('ds.')) return data
    return (op.startsWith('tasks.') || op.startsWith('mailq.')) && data.lead?.sharedTasks === true ? data : client
  }

  const heartbeat = (): void => {
    if (client.connected && !deregistered) client.send('heartbeat', heartbeatBody())
  }
  const timer = setInterval(heartbeat, config.heartbeatInterval)
  timer.unref()

  return {
    get connected() {
      return client.connected
    },
    heartbeat,
    request: (op, body, timeoutMs) => linkFor(op).request(op, body, timeoutMs),
    async deregister() {
      if (deregistered) return
      deregistered = true
      if (!client.connected) return
      try {
        await client.request('deregister', {}, DEREGISTER_TIMEOUT_MS)
        log.info('deregistered from the seed')
      } catch (err) {
        log.warn({ err }, 'could not deregister from the seed; it will drop this node when heartbeats stop')
      }
    },
    async close() {
      clearInterval(timer)
      await Promise.all([client.close(), data?.close()])
    },
  }
}
