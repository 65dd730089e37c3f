/**
 * The one Role contract. Each `roles/<name>/role.ts` (and `seed/role.ts`)
 * exports one object of this shape; the lifecycle around it (forking,
 * supervision, seed link, health, drain) lives once in `lib/process`.
 */
import type { Registry } from 'prom-client'
import type { NodeConfig, RoleName } from '../core/config.js'
import type { Logger } from '../core/log.js'
import type { LivePeer, NodeState, SeedPush } from '../core/node-state.js'
import type { HttpServerStats } from '../http/server.js'
import type { TemplatedApp } from '../http/uws.js'
import type { AppLoad } from '../transport/meta-shapes.js'

/** Anything running: `close()` lets queued work finish, `destroy()` stops now. */
export interface Handle {
  close(): Promise<void>
  destroy(err?: Error): void
}

/** Closes `handles`, given in the order they were opened, one after another from the last: what opened later may use what opened earlier. */
export async function closeInReverse(handles: readonly Handle[]): Promise<void> {
  for (const handle of [...handles].reverse()) await handle.close()
}

export interface ChildContext {
  readonly config: NodeConfig
  readonly log: Logger
  /** This child's slot, 0 to `--children` − 1 (a replacement takes its predecessor's; both may run for a while). */
  readonly index: number
  /** The child's uWS app; the role adds its routes before the child listens. */
  readonly app: TemplatedApp
  /** Current node state; replaced (never mutated) on every update from the parent. */
  state(): NodeState
  /** Subscribe to seed pushes the parent relays. */
  onPush(listener: (push: SeedPush) => void): void
  /** Count work that must finish before this child may exit (e.g. a WebSocket). */
  track(): () => void
  /**
   * This child's metrics registry: the role adds its `espra_<role>_…` series
   * (lib/process/metric-sources.ts), read from its own counters at scrape time.
   * The parent labels them `child="<index>"`.
   */
  readonly metrics: Registry
  /** The role's own traffic with its parent (whatever `ParentContext.children` sends). */
  readonly parent: ParentChannel
}

/**
 * What a role's child side returns. A child told to drain runs one ordered
 * sequence (lib/process/child.ts): `drain()`, while the HTTP server stops
 * accepting and tells kept-alive clients to close; then the HTTP drain, until
 * every request the child accepted is answered (or the deadline passes); then
 * `close()`, which may close what those requests needed, in reverse order of
 * opening.
 */
export interface ChildHandle extends Handle {
  /**
   * Stop taking new work that is not a request (tasks, timers) and tell the
   * connections the role keeps open (WebSocket, SSE, long-poll) to go, so the
   * HTTP drain does not wait for them until its deadline.
   */
  drain?(): void
}

/** A child's side of the role's IPC with its parent. Messages keep their order. */
export interface ParentChannel {
  /** One-way message to the parent's `children.onMessage`. */
  send(body: unknown): void
  /** Request answered by the parent's `children.onRequest`; rejects with its coded error or `ESPRA_ERR_IPC_TIMEOUT`. */
  request<R>(body: unknown, timeoutMs?: number): Promise<R>
  onMessage(listener: (body: unknown) => void): void
}

/** The parent's side of the role's IPC with its children; children are named by their pid. */
export interface ChildrenChannel {
  broadcast(body: unknown): void
  /** False when that child is gone. */
  send(child: number, body: unknown): boolean
  onMessage(listener: (child: number, body: unknown) => void): void
  /** One handler; its return value (or promise, or throw) is the answer. */
  onRequest(handler: (child: number, body: unknown) => unknown): void
  /** A child process exited (crash, replacement or stop): forget what it held. */
  onExit(listener: (child: number) => void): void
}

/** What a role that brings its own listener gets in each child (instead of a uWS app). */
export interface ListenContext {
  readonly config: NodeConfig
  readonly log: Logger
  /** The node's public socket, bound once by the parent; every child inherits it as this fd. */
  readonly fd: number
  /** The ports of `Role.listenPorts`, bound the same way, in that order. */
  readonly extraFds: readonly number[]
  state(): NodeState
  onPush(listener: (push: SeedPush) => void): void
  /** The health answer every node serves on `GET /_espra/health`, as this child would give it. */
  health(): { status: number; body: Record<string, unknown> }
  /** This child's metrics registry, as `ChildContext.metrics`. */
  readonly metrics: Registry
  /** The role's own traffic with its parent, as `ChildContext.parent` (e.g. the mail role's seed requests). */
  readonly parent: ParentChannel
}

/** A listener a role brings: the child reports its port, samples its stats and drains it. */
export interface Listener extends Handle {
  readonly port: number
  stats(): HttpServerStats
  /** Stops accepting, lets in-flight work finish (connections told to close), cuts at the deadline. */
  drain(timeoutMs: number): Promise<{ cut: number }>
}

export interface ParentContext {
  readonly config: NodeConfig
  readonly log: Logger
  /** The role's own traffic with its children. */
  readonly children: ChildrenChannel
  /** The parent's metrics registry (`process="parent"`): the seed's series, and a role parent's own figures. */
  readonly metrics: Registry
  /** Subscribe to seed pushes (routing tables and the like), as children do. */
  onPush(listener: (push: SeedPush) => void): void
  /**
   * The app build this node's children serve (null: none), as health and
   * heartbeats report it; the seed shows it in `nodes` and `build.list`.
   */
  setBuild(id: string | null): void
  /** Uploads this node keeps locally until the blob store takes them; heartbeats carry it (`load.pendingUploads`) to `admin status`. */
  setPendingUploads(count: number): void
  /** App nodes: how their children answer with the build served now; read at every heartbeat (`load.app`), for canary deploys. */
  setAppLoad(source: () => AppLoad | null): void
  /** A build the children refused (null: none since the last served one); health checks show it as `buildRefused`. */
  setBuildRefused(refused: { id: string; code: string; message: string } | null): void
  /**
   * A dependency the node needs (e.g. `redis`) is down, with the reason in our
   * words (null: up again). While any is down the node is `degraded` and
   * health checks list them under `dependencies`.
   */
  setDependency(name: string, down: string | null): void
  /**
   * Live nodes run with `--live-homes children`: the children that home channels now (null: the node does); register
   * and heartbeats carry them to the seed's routing tables. `lost`: the latest peers that exited without handing their
   * channels over, so no other peer waits for their handover.
   */
  setLivePeers(peers: readonly LivePeer[] | null, lost?: readonly string[]): void
  /** A request to the seed over the node's link (e.g. `files.changed`); rejects while no seed is reachable. */
  seedRequest<R>(op: string, body: unknown, timeoutMs?: number): Promise<R>
  /** Children alive now (0 before they are forked). */
  childrenAlive(): number
}

export interface Role {
  readonly name: RoleName
  /** One line for `--help` and logs. */
  readonly summary: string
  /** Features later issues build; logged at start and printed in `--help`, never faked. */
  readonly notYet: readonly string[]
  /**
   * Whether the node forks children that share the public port. The seed
   * keeps its registry in one process, so it runs in its parent only.
   */
  readonly forks: boolean
  /**
   * Node flags the children need (e.g. `--openssl-legacy-provider` for
   * whirlpool), added to the parent's own when they are forked.
   */
  readonly childExecArgv?: readonly string[]
  /**
   * What the parent subscribes to at the seed on every (re)connect, e.g.
   * `{routing: region}` for proxies; pushes that follow reach every child.
   */
  subscribe?(config: NodeConfig): Record<string, unknown>
  /** Role work in the parent process (the seed's meta server). */
  parent?(ctx: ParentContext): Promise<Handle>
  /** Adds the role's routes to a child's app; runs before the child listens. */
  child?(ctx: ChildContext): Promise<ChildHandle | void>
  /**
   * For a role that serves its public port itself instead of through the
   * child's uWS app (the proxy's raw TCP front); runs instead of `child`. The
   * parent binds the port once and every child listens on that one socket
   * (see lib/process/shared-socket.ts). The listener answers
   * `GET /_espra/health` itself.
   */
  listen?(ctx: ListenContext): Promise<Listener>
  /**
   * Public ports a `listen` role serves beyond `--port` (the proxy's TLS
   * port), each with the option that sets it: checked free before the node
   * starts and bound by the parent once each like `--port`; children get
   * them as `ListenContext.extraFds`.
   */
  listenPorts?(config: NodeConfig): readonly { readonly port: number; readonly option: string }[]
}
