/**
 * The shapes of monitoring and alerts (docs/alerts.md): the rules, a
 * condition a rule finds, the alert record kept in the datastore (kind
 * `alerts`), a silence (kind `alertSilences`) and a notification.
 */

/** Every rule, in the order docs/alerts.md lists them. */
export const RULES = [
  'node-down', 'node-health', 'crash-loop', 'rss', 'event-loop-lag', 'dead-letters', 'task-backlog', 'pending-uploads', 'build-refused', 'build-stuck', 'seed-link', 'seed-leader',
] as const
export type RuleName = (typeof RULES)[number]

/** A rule that fails now, for one node (or the cluster: `node` null). */
export interface Condition {
  readonly rule: RuleName
  readonly node: string | null
  /** One line in our words, e.g. `node live-1 (127.0.0.1:8083) down: 3 probes failed (ECONNREFUSED)`. */
  readonly summary: string
  /** What the rule saw (figures, thresholds, the node's address). Small: it goes into the record. */
  readonly details: Readonly<Record<string, unknown>>
}

/** One node (or the cluster) in an alert. */
export interface AlertMember {
  /** Null for a cluster-wide rule. */
  node: string | null
  openedAt: number
  /** When this member's condition was found clear and its flap penalty low enough; null while open. */
  resolvedAt: number | null
  summary: string
  details: Record<string, unknown>
}

export type AlertState = 'open' | 'resolved'

/** An incident as stored (kind `alerts`, key `a/<id>`) and as notifications carry it. */
export interface AlertRecord {
  /** Sortable newest first: keys of newer alerts sort before older ones. */
  id: string
  rule: RuleName
  /** The node, or null for a grouped alert (see `nodes`) or a cluster-wide rule. */
  node: string | null
  /** Every node in the alert (empty for a cluster-wide rule). */
  nodes: string[]
  grouped: boolean
  state: AlertState
  openedAt: number
  resolvedAt: number | null
  summary: string
  details: Record<string, unknown>
  members: AlertMember[]
  /** The flap penalty passed the flapping mark while it was open (docs/alerts.md, "Flapping"). */
  flapping: boolean
  /** Changes of its conditions (failing ↔ clear) while it was open. */
  changes: number
  /** Whether each notification went out (false: silenced, or never sent because it resolved silenced). */
  notified: { opened: boolean; resolved: boolean }
  /** The silence that kept a notification back, if one did. */
  silencedBy: string | null
  updatedAt: number
}

/** What sinks are told. `grouped` is the opening of a grouped alert. */
export type AlertEventType = 'opened' | 'resolved' | 'grouped'

export interface AlertNotification {
  readonly event: AlertEventType
  readonly alert: AlertRecord
  /**
   * The alert engine lease's epoch of the admin node that sent it (docs/alerts.md, "One engine per cluster");
   * absent only on `seed-link` sent by an admin node that reaches no seed ("No seed reachable").
   */
  readonly epoch?: number
}

/** A silence (kind `alertSilences`, key its id): notifications matching it are not sent until it expires. */
export interface Silence {
  id: string
  /** Matches alerts of this rule; null: any rule (then `node` is set). */
  rule: RuleName | null
  /** Matches alerts of this node; null: any node (then `rule` is set). */
  node: string | null
  /** ms since the epoch; mandatory, at most {@link MAX_SILENCE_MS} after it was set. */
  until: number
  by: string
  comment: string
  createdAt: number
}

/** The longest a silence may last: 30 days. */
export const MAX_SILENCE_MS = 30 * 24 * 3_600_000

export const isRule = (v: unknown): v is RuleName => RULES.includes(v as RuleName)

/** Whether a silence in force at `now` covers an alert: every node of it (or the cluster) must match. */
export function silenceMatches(s: Silence, alert: Pick<AlertRecord, 'rule' | 'nodes'>, now: number): boolean {
  if (s.until <= now) return false
  if (s.rule !== null && s.rule !== alert.rule) return false
  if (s.node === null) return true
  return alert.nodes.length > 0 && alert.nodes.every((n) => n === s.node)
}
