/**
 * The node state a parent keeps and pushes to its children over IPC, so
 * every child's health answer is current. It lives in core because both the
 * http layer (health) and the process layer (supervision) read it.
 */

/** What the parent knows and pushes to its children; shown by health checks. */
export interface NodeState {
  readonly draining: boolean
  readonly childrenAlive: number
  readonly childrenWanted: number
  readonly seedConnected: boolean
  readonly build: string | null
  /**
   * The last build this node's children refused to run (app nodes: the module
   * did not load or its `init` threw) while they kept `build`; cleared when a
   * build is served after it. Shown by health checks.
   */
  readonly buildRefused?: { readonly id: string; readonly code: string; readonly message: string } | null
  /** Indices of children crash-looping: still restarted with backoff, not yet stable (health `degraded`). */
  readonly crashLooping: readonly number[]
  /** Last routing table received from the seed (proxy nodes). */
  readonly routing: RoutingTable | null
  /**
   * Dependencies this node needs that are down right now (e.g. `redis`),
   * each with the reason in our words; absent or empty while all are up.
   * Any entry makes the node `degraded`.
   */
  readonly dependencies?: Readonly<Record<string, string>>
  /**
   * Planned maintenance as the seed last pushed it (`maintenance` push),
   * checked by the parent; null or absent: none. Children started later get
   * it here, in their first state. Matching and answers:
   * lib/http/maintenance.ts.
   */
  readonly maintenance?: MaintenanceState | null
  /** Live nodes run with `--live-homes children`: the children that home channels now, as register and heartbeats report them. */
  readonly livePeers?: readonly LivePeer[]
  /** Of those, the latest that exited without handing their channels over (a crash): the seed names them lost in the next routing table. */
  readonly livePeersLost?: readonly string[]
}

/** Planned maintenance (docs/operations.md, "Planned maintenance"): the seed's record, datastore kind `cluster`, key `maintenance`. */
export interface MaintenanceState {
  /** What the maintenance page says, 1 to 1,000 characters. */
  readonly message: string
  /** When it ends by itself (ms since the epoch); every node also stops answering for it then, by its own clock. */
  readonly until: number
  /** Lower-case host names it applies to; null: every host. */
  readonly hosts: readonly string[] | null
  /** Client addresses (IPv4/IPv6 addresses or CIDR blocks) still served as usual. */
  readonly allow: readonly string[]
  /** When it was set (ms since the epoch). */
  readonly at: number
}

/** A Live child that homes channels as a peer of its own (`--live-homes children`; lib/transport/meta-shapes.ts). */
export interface LivePeer {
  readonly id: string
  readonly linkPort: number
}

/** A Live node of a routing table; `peers`: its children that home channels (`--live-homes children`; absent: the node does). */
export interface RoutingNode {
  readonly id: string
  readonly address: string
  readonly port: number
  readonly peers?: readonly LivePeer[]
}

export interface RoutingTable {
  readonly region: string
  readonly version: number
  readonly nodes: readonly RoutingNode[]
  /** Nodes of the previous table that the seed lost (not drained or stopped), and Live peers their node reported dead: they hand nothing over. */
  readonly lost?: readonly string[]
}

/** One-way push from the seed, relayed by the parent to every child. */
export interface SeedPush {
  readonly op: string
  readonly body: unknown
}
