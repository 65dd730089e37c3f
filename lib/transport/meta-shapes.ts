/**
 * The bodies the meta protocol carries (docs/meta-protocol.md, "Shapes"), and
 * their validators. They live in lib/ so node parents and the admin CLI build
 * the same shapes the seed checks.
 */
import { ROLE_NAMES, type RoleName } from '../core/config.js'
import { createError, EspraError } from '../core/errors.js'

/** What a node reports about its own health. */
export type ReportedHealth = 'ok' | 'draining' | 'degraded'
/** Health as the seed sees it: `suspect` once the node's connection closed. */
export type NodeHealth = ReportedHealth | 'suspect'

export const REPORTED_HEALTH: readonly ReportedHealth[] = ['ok', 'draining', 'degraded']

/** Body of `register`: who a node is and how to reach it. */
export interface NodeInfo {
  id: string
  role: RoleName
  region: string
  address: string
  port: number
  /** 0 when the node serves no metrics. */
  metricsPort: number
  pid: number
  version: string
  children: number
  childrenWanted: number
  build: string | null
  health: ReportedHealth
  /** Node start time, ms since the epoch. */
  startedAt: number
  /** Mail nodes: the SMTP port (`--smtp-port`); absent on other roles. */
  smtpPort?: number
  /** Nodes run with `--elb-target-group`: their place in it (absent: no target group). Heartbeats carry it too. */
  elb?: ElbView
  /** Live nodes run with `--live-homes children`: the children that home channels now (absent: the node homes them). Heartbeats carry it too. */
  livePeers?: LivePeer[]
  /** With `livePeers`: the ids of the latest of this node's peers that exited without handing their channels over (a crash). Heartbeats carry it too. */
  livePeersLost?: string[]
}

/**
 * A Live child that homes channels as a peer of its own (`--live-homes
 * children`): its id `<node>/<index>.<pid>` (a new one for every process, so a
 * replaced child is a new peer) and the port of its internal link.
 */
export interface LivePeer {
  id: string
  linkPort: number
}

/** Most Live peers one node may list (its children). */
export const MAX_LIVE_PEERS = 256
const LIVE_PEER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\/[0-9]{1,4}\.[0-9]{1,10}$/

/** Why `list` is no node's Live peers (null: it is); `owner`: the node's id, which every peer id must start with (null: not known here). */
function livePeersProblem(list: unknown, owner: string | null): string | null {
  if (!Array.isArray(list) || list.length > MAX_LIVE_PEERS) return `an array of at most ${MAX_LIVE_PEERS} peers`
  const ids = new Set<string>()
  for (const p of list) {
    if (!isMap(p) || !matches(p['id'], LIVE_PEER_ID) || !isInt(p['linkPort'], 1, 65535)) return '{id: "<node>/<index>.<pid>", linkPort} entries'
    if (owner !== null && !p['id'].startsWith(`${owner}/`)) return `peers of this node (ids starting "${owner}/")`
    if (ids.has(p['id'])) return 'peers with distinct ids'
    ids.add(p['id'])
  }
  return null
}

export const copyLivePeers = (list: readonly LivePeer[]): LivePeer[] => list.map((p) => ({ id: p.id, linkPort: p.linkPort }))

/** Most ids of lost Live peers one node may report. */
export const MAX_LIVE_PEERS_LOST = 16

/** Why `list` is not the ids of a node's lost Live peers (null: it is). */
function livePeersLostProblem(list: unknown, owner: string | null): string | null {
  if (!Array.isArray(list) || list.length > MAX_LIVE_PEERS_LOST) return `an array of at most ${MAX_LIVE_PEERS_LOST} peer ids`
  for (const id of list) {
    if (!matches(id, LIVE_PEER_ID)) return 'peer ids "<node>/<index>.<pid>"'
    if (owner !== null && !id.startsWith(`${owner}/`)) return `ids of this node's peers (starting "${owner}/")`
  }
  return null
}

export interface NodeLoad {
  connections: number
  rps: number
  rssBytes: number
  lagMs: number
  /** The same figures for each running child, by slot (absent: a node without children, or an older node). */
  byChild?: ChildLoad[]
  /** Fileservers: uploads received but not yet in the blob store (absent: none kept). */
  pendingUploads?: number
  /** App nodes: how the build they serve answers (absent: older nodes, other roles). */
  app?: AppLoad
}

/**
 * An app node's answers with the build it serves now, counted by its
 * children since each started serving that build (a restarted child starts
 * again from 0): canary deploys compare these between nodes.
 */
export interface AppLoad {
  build: string | null
  /** Answers sent (every status, the platform's own error answers too). */
  requests: number
  /** Of those, status 500 to 599. */
  errors5xx: number
  /** App worker threads that exited by themselves (not retired, not terminated for a timeout). */
  crashes: number
  /** Answers per bucket of LATENCY_BOUNDS_MS (lib/core/latency-histogram.ts), time to the status line. */
  latency: number[]
}

/** One child's figures in a heartbeat: its slot (`child` label of the metrics), its pid, and what it reported last. */
export interface ChildLoad {
  slot: number
  pid: number
  connections: number
  rps: number
  rssBytes: number
  lagMs: number
}

/** Most children a heartbeat's `load.byChild` may list (the most `--children` allows). */
export const MAX_CHILD_LOADS = 1024

/** Most buckets a heartbeat's `load.app.latency` may carry. */
export const MAX_LATENCY_BUCKETS = 32

/**
 * A node's place in its ELB target group as the node last saw it: `joining`
 * until it is healthy itself and registered, then what DescribeTargetHealth
 * answered (`initial`, `healthy`, ...), `leaving` while it deregisters and
 * `left` once out (`admin drain`, stop). `healthy` is what a rolling restart
 * waits for.
 */
export interface ElbView {
  state: string
  targetGroup: string
}

/** Body of the one-way `heartbeat` message. */
export interface HeartbeatBody {
  health: ReportedHealth
  children: number
  build: string | null
  load: NodeLoad
  /** Only from nodes run with `--elb-target-group`. */
  elb?: ElbView
  /** Only from Live nodes run with `--live-homes children`. */
  livePeers?: LivePeer[]
  livePeersLost?: string[]
}

/** A registry entry as `nodes` answers it and `event` pushes carry it. */
export interface NodeView extends Omit<NodeInfo, 'health' | 'livePeersLost'> {
  health: NodeHealth
  heartbeatAgeMs: number
  load: NodeLoad
  connected: boolean
  registeredAt: number
  /** The node's drain order (`admin drain`), null when it is not drained; only the `nodes` answer carries it, not `event` pushes. */
  drain?: { then: 'stop' | 'idle' | 'restart'; graceMs: number; at: number; restartOf?: number } | null
  /** Seeds only, in the `nodes` answer: whether this seed leads, and the leader's epoch (null with the embedded datastore). */
  leader?: boolean
  epoch?: number | null
}

/** A Live node of a routing table; `peers`: its children that home channels (`--live-homes children`; absent: the node does). */
export interface RoutingNode {
  id: string
  address: string
  port: number
  peers?: LivePeer[]
}

/** The healthy Live nodes of one region, sorted by id. */
export interface RoutingTable {
  region: string
  /** Grows on every change, also across seed restarts (it is time-based). */
  version: number
  nodes: RoutingNode[]
  /** Nodes of the previous table that left it because the seed lost them (heartbeat timeout, connection closed), not drained or stopped; and peers of the previous table their node reported lost (`livePeersLost`). */
  lost?: string[]
}

export type NodeEventType = 'joined' | 'left' | 'health'

/** Body of the one-way `event` push to subscribers. */
export interface NodeEvent {
  type: NodeEventType
  /** When the seed saw it, ms since the epoch. */
  at: number
  node: NodeView
  reason?: string
}

export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
export const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/
const ADDRESS = /^[A-Za-z0-9.:\-[\]]{1,253}$/
const VERSION_TEXT = /^[\x21-\x7e]{1,64}$/
const BUILD = /^[\x21-\x7e]{1,128}$/
const ELB_STATE = /^[a-z.-]{1,32}$/
const ELB_ARN = /^[\x21-\x7e]{1,512}$/

const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
const isAmount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0
const matches = (v: unknown, re: RegExp): v is string => typeof v === 'string' && re.test(v)
const isBuild = (v: unknown): v is string | null => v === null || matches(v, BUILD)
const isElbView = (v: unknown): v is ElbView => isMap(v) && matches(v['state'], ELB_STATE) && matches(v['targetGroup'], ELB_ARN)
const isHealth = (v: unknown): v is ReportedHealth => v === 'ok' || v === 'draining' || v === 'degraded'

/** True for a msgpack map decoded as a plain object. */
export function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function bad(field: string, allowed: string): EspraError {
  return createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: `must be ${allowed}` })
}

/**
 * Checks a `register` body and returns a clean copy (unknown keys dropped).
 * Throws `ESPRA_ERR_META_BAD_REQUEST` naming the first bad field.
 */
export function parseNodeInfo(body: unknown): NodeInfo {
  if (!isMap(body)) throw bad('body', 'a map')
  const b = body
  if (!matches(b['id'], NODE_ID)) throw bad('id', 'letters, digits, ".", "_" and "-", at most 64')
  if (!ROLE_NAMES.includes(b['role'] as RoleName)) throw bad('role', `one of ${ROLE_NAMES.join(', ')}`)
  if (!matches(b['region'], REGION)) throw bad('region', 'lower-case letters, digits and dashes, at most 32')
  if (!matches(b['address'], ADDRESS)) throw bad('address', 'a host name or IP address')
  if (!isInt(b['port'], 1, 65535)) throw bad('port', 'an integer from 1 to 65535')
  if (!isInt(b['metricsPort'], 0, 65535)) throw bad('metricsPort', 'an integer from 0 to 65535')
  if (!isInt(b['pid'], 0, 2 ** 32)) throw bad('pid', 'a process id')
  if (!matches(b['version'], VERSION_TEXT)) throw bad('version', 'printable text, at most 64')
  if (!isInt(b['children'], 0, 1024)) throw bad('children', 'an integer from 0 to 1024')
  if (!isInt(b['childrenWanted'], 0, 1024)) throw bad('childrenWanted', 'an integer from 0 to 1024')
  if (!isBuild(b['build'])) throw bad('build', 'null or printable text, at most 128')
  if (!isHealth(b['health'])) throw bad('health', `one of ${REPORTED_HEALTH.join(', ')}`)
  if (!isAmount(b['startedAt'])) throw bad('startedAt', 'ms since the epoch')
  if (b['smtpPort'] !== undefined && !isInt(b['smtpPort'], 1, 65535)) throw bad('smtpPort', 'an integer from 1 to 65535')
  if (b['elb'] !== undefined && !isElbView(b['elb'])) throw bad('elb', '{state, targetGroup}')
  const peersProblem = b['livePeers'] === undefined ? null : livePeersProblem(b['livePeers'], b['id'])
  if (peersProblem !== null) throw bad('livePeers', peersProblem)
  const lostProblem = b['livePeersLost'] === undefined ? null : livePeersLostProblem(b['livePeersLost'], b['id'])
  if (lostProblem !== null) throw bad('livePeersLost', lostProblem)
  return {
    id: b['id'], role: b['role'] as RoleName, region: b['region'], address: b['address'], port: b['port'],
    metricsPort: b['metricsPort'], pid: b['pid'], version: b['version'], children: b['children'],
    childrenWanted: b['childrenWanted'], build: b['build'], health: b['health'], startedAt: b['startedAt'],
    ...(b['smtpPort'] !== undefined ? { smtpPort: b['smtpPort'] as number } : {}),
    ...(isElbView(b['elb']) ? { elb: { state: b['elb'].state, targetGroup: b['elb'].targetGroup } } : {}),
    ...(b['livePeers'] !== undefined ? { livePeers: copyLivePeers(b['livePeers'] as LivePeer[]) } : {}),
    ...(b['livePeersLost'] !== undefined ? { livePeersLost: [...b['livePeersLost'] as string[]] } : {}),
  }
}

/**
 * Checks a heartbeat body in place, on the hot path: returns null when it is
 * valid, else a short reason. It allocates nothing for a valid body.
 */
export function heartbeatProblem(body: unknown, nodeId: string | null = null): string | null {
  if (!isMap(body)) return 'heartbeat body is not a map'
  if (!isHealth(body['health'])) return 'heartbeat health is invalid'
  if (!isInt(body['children'], 0, 1024)) return 'heartbeat children is invalid'
  if (!isBuild(body['build'])) return 'heartbeat build is invalid'
  const load = body['load']
  if (!isMap(load)) return 'heartbeat load is not a map'
  if (!isAmount(load['connections']) || !isAmount(load['rps']) || !isAmount(load['rssBytes']) || !isAmount(load['lagMs'])) {
    return 'heartbeat load figures must be non-negative numbers'
  }
  if (load['pendingUploads'] !== undefined && !isAmount(load['pendingUploads'])) return 'heartbeat pendingUploads must be a non-negative number'
  if (load['byChild'] !== undefined) {
    const problem = childLoadsProblem(load['byChild'])
    if (problem !== null) return problem
  }
  if (body['elb'] !== undefined && !isElbView(body['elb'])) return 'heartbeat elb must be {state, targetGroup}'
  if (body['livePeers'] !== undefined) {
    const problem = livePeersProblem(body['livePeers'], nodeId)
    if (problem !== null) return `heartbeat livePeers must be ${problem}`
  }
  if (body['livePeersLost'] !== undefined) {
    const problem = livePeersLostProblem(body['livePeersLost'], nodeId)
    if (problem !== null) return `heartbeat livePeersLost must be ${problem}`
  }
  if (load['app'] !== undefined) return appLoadProblem(load['app'])
  return null
}

function childLoadsProblem(list: unknown): string | null {
  if (!Array.isArray(list) || list.length > MAX_CHILD_LOADS) return `heartbeat load.byChild must be an array of at most ${MAX_CHILD_LOADS} children`
  for (const c of list) {
    if (!isMap(c) || !isInt(c['slot'], 0, MAX_CHILD_LOADS - 1) || !isInt(c['pid'], 0, 2 ** 32)) return 'heartbeat load.byChild entries need a slot (0 to 1023) and a pid'
    if (!isAmount(c['connections']) || !isAmount(c['rps']) || !isAmount(c['rssBytes']) || !isAmount(c['lagMs'])) return 'heartbeat load.byChild figures must be non-negative numbers'
  }
  return null
}

function appLoadProblem(app: unknown): string | null {
  if (!isMap(app)) return 'heartbeat load.app is not a map'
  if (!isBuild(app['build'])) return 'heartbeat load.app.build is invalid'
  if (!isAmount(app['requests']) || !isAmount(app['errors5xx']) || !isAmount(app['crashes'])) return 'heartbeat load.app counts must be non-negative numbers'
  const latency = app['latency']
  if (!Array.isArray(latency) || latency.length > MAX_LATENCY_BUCKETS) return `heartbeat load.app.latency must be an array of at most ${MAX_LATENCY_BUCKETS} counts`
  for (const n of latency) if (!isAmount(n)) return 'heartbeat load.app.latency counts must be non-negative numbers'
  return null
}

/** Checks a region name received in a request body. */
export function parseRegion(value: unknown, field = 'region'): string {
  if (!matches(value, REGION)) throw bad(field, 'lower-case letters, digits and dashes, at most 32')
  return value
}

/** What a seed that leads by a lease says about leadership in its welcome. */
export interface WelcomeLead {
  readonly leader: boolean
  readonly epoch: number | null
  /** The leader's meta address when known. */
  readonly address: string | null
  /**
   * The seed's task queues (`tasks.*`, `mailq.*`) live in the database every
   * seed shares (`--tasks postgres`), so any seed serves them; false when
   * each seed keeps its own (`--tasks embedded`) or the seed does not say.
   */
  readonly sharedTasks: boolean
}

/** The `lead` field of a welcome; null from a seed without a lease (embedded) or when malformed. */
export function parseWelcomeLead(welcome: Record<string, unknown>): WelcomeLead | null {
  const lead = welcome['lead']
  if (typeof lead !== 'object' || lead === null || Array.isArray(lead)) return null
  const { leader, epoch, address, sharedTasks } = lead as Record<string, unknown>
  if (typeof leader !== 'boolean') return null
  return {
    leader,
    epoch: typeof epoch === 'number' && Number.isSafeInteger(epoch) && epoch >= 0 ? epoch : null,
    address: typeof address === 'string' && address.length <= 300 ? address : null,
    sharedTasks: sharedTasks === true,
  }
}
