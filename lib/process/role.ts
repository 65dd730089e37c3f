/**
 * The one Role contract. Each `roles/<name>/role.ts` (and `seed/role.ts`)
 * exports one object of this shape; the lifecycle around it (forking,
 * supervision, seed link, health, drain) lives once in `lib/process`.
 */
import type { TemplatedApp } from 'uWebSockets.js'
import type { NodeConfig, RoleName } from '../core/config.js'
import type { Logger } from '../core/log.js'

/** Anything running: `close()` lets queued work finish, `destroy()` stops now. */
export interface Handle {
  close(): Promise<void>
  destroy(err?: Error): void
}

/** What the parent knows and pushes to its children; shown by health checks. */
export interface NodeState {
  readonly draining: boolean
  readonly childrenAlive: number
  readonly childrenWanted: number
  readonly seedConnected: boolean
  readonly build: string | null
  /** Names of children that crash-looped and are no longer restarted. */
  readonly crashLooping: readonly number[]
  /** Last routing table received from the seed (proxy nodes). */
  readonly routing: RoutingTable | null
}

export interface RoutingTable {
  readonly region: string
  readonly version: number
  readonly nodes: readonly { readonly id: string; readonly address: string; readonly port: number }[]
}

/** One-way push from the seed, relayed by the parent to every child. */
export interface SeedPush {
  readonly op: string
  readonly body: unknown
}

export interface ChildContext {
  readonly config: NodeConfig
  readonly log: Logger
  /** The child's uWS app; the role adds its routes before the child listens. */
  readonly app: TemplatedApp
  /** Current node state; replaced (never mutated) on every update from the parent. */
  state(): NodeState
  /** Subscribe to seed pushes the parent relays. */
  onPush(listener: (push: SeedPush) => void): void
  /** Count work that must finish before this child may exit (e.g. a WebSocket). */
  track(): () => void
}

export interface ParentContext {
  readonly config: NodeConfig
  readonly log: Logger
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
  /** Role work in the parent process (the seed's meta server). */
  parent?(ctx: ParentContext): Promise<Handle>
  /** Adds the role's routes to a child's app; runs before the child listens. */
  child?(ctx: ChildContext): Promise<Handle | void>
}
