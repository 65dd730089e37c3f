/**
 * The rules (docs/alerts.md, "Rules"): from one snapshot of what the admin
 * node knows (the seed's registry, its own probes, task counts, the latest
 * build) to the conditions failing now. Pure; thresholds come from the
 * admin node's options.
 */
import type { NodeView } from '../transport/meta-shapes.js'
import type { Condition } from './alert.js'
import type { ProbeResult } from './store.js'

export interface RuleThresholds {
  /** Consecutive failed probes that make a node down. */
  readonly downAfter: number
  /** Bytes; 0 off. */
  readonly maxRss: number
  /** ms; 0 off. */
  readonly maxLagMs: number
  /** 0 off. */
  readonly deadLetters: number
  /** 0 off. */
  readonly taskBacklog: number
  /** 0 off. */
  readonly pendingUploads: number
  readonly buildDeadlineMs: number
}

/** Ready counts that grew at each of this many rounds in a row make a growing backlog. */
export const BACKLOG_GROWTH_ROUNDS = 6

/** A node the admin node watches: registered now, or gone from the registry without deregistering. */
export interface WatchedNode {
  readonly id: string
  readonly role: string
  readonly address: string
  readonly port: number
  /** The registry's view; null while the node is not registered. */
  readonly view: NodeView | null
  /** Why it left the registry (`timeout`), while it is gone; null while registered. */
  readonly gone: string | null
  /** Failed probes in a row. */
  readonly failures: number
  readonly lastProbe: ProbeResult | null
  /** The last health body the node answered (JSON), null if none yet. */
  readonly body: Readonly<Record<string, unknown>> | null
}

export interface LatestBuild {
  readonly id: string
  readonly at: number
  readonly state: string
  readonly refused: readonly { readonly node: string; readonly code: string; readonly message: string }[]
}

export interface ClusterSnapshot {
  readonly now: number
  readonly nodes: readonly WatchedNode[]
  /** The task queue's counts now (null: unknown, e.g. the queue is out of reach). */
  readonly tasks: { readonly ready: number; readonly dead: number } | null
  /** Ready counts of the last rounds, oldest first. */
  readonly readyHistory: readonly number[]
  readonly build: LatestBuild | null
  /** Since when the admin node has had no link to any seed (ms), null while linked. */
  readonly seedLinkDownSince: number | null
  /** How long without a link alerts: `--alert-down-after` probe intervals. */
  readonly seedLinkGraceMs: number
  /** The last change of the seeds' leader the admin node saw (PostgreSQL seeds only), null when none. */
  readonly seedLeaderChange?: SeedLeaderChange | null
  /** `--alert-leader-quiet`: a change fails `seed-leader` until this long after the last one. */
  readonly seedLeaderQuietMs?: number
}

/** A change of the seeds' leader: the lease's epoch grew (docs/postgres.md, "Several seeds"). */
export interface SeedLeaderChange {
  /** When the admin node saw the last change (ms since the epoch). */
  readonly at: number
  /** When the first change of this run of changes was seen. */
  readonly firstAt: number
  /** The leader before, as last seen (null: none known). */
  readonly from: string | null
  /** The leader now (null: the seed answering did not know yet). */
  readonly to: string | null
  readonly epoch: number
  /** Changes seen within the quiet period of each other. */
  readonly changes: number
}

const where = (n: WatchedNode) => `${n.id} (${n.role}, ${n.address}:${n.port})`
const mb = (bytes: number) => `${Math.round(bytes / 1024 ** 2)} MB`

/** Every condition failing in the snapshot. */
export function failingConditions(s: ClusterSnapshot, t: RuleThresholds): Condition[] {
  const out: Condition[] = []
  for (const n of s.nodes) {
    const base = { role: n.role, address: n.address, port: n.port }
    const down = downReason(n, t)
    if (down !== null) {
      out.push({ rule: 'node-down', node: n.id, summary: `node ${where(n)} down: ${down}`, details: { ...base, reason: down, failures: n.failures, lastError: n.lastProbe?.error ?? null } })
      // A node down is one alert; what else it fails is not news.
      continue
    }
    const crashLooping = Array.isArray((n.body?.['children'] as { crashLooping?: unknown } | undefined)?.crashLooping)
      ? ((n.body!['children'] as { crashLooping: unknown[] }).crashLooping) : []
    if (crashLooping.length > 0) {
      out.push({ rule: 'crash-loop', node: n.id, summary: `node ${where(n)}: ${crashLooping.length} child(ren) crash-looping`, details: { ...base, crashLooping } })
    } else if (n.view?.health === 'degraded' || n.body?.['health'] === 'degraded') {
      const dependencies = n.body?.['dependencies'] ?? null
      const why = dependencies !== null && typeof dependencies === 'object' ? `: ${Object.entries(dependencies).map(([k, v]) => `${k} ${String(v)}`).join('; ')}` : ''
      out.push({ rule: 'node-health', node: n.id, summary: `node ${where(n)} degraded${why}`, details: { ...base, health: 'degraded', dependencies, children: n.body?.['children'] ?? null } })
    }
    const load = n.view?.load
    if (load === undefined) continue
    if (t.maxRss > 0 && load.rssBytes > t.maxRss) {
      out.push({ rule: 'rss', node: n.id, summary: `node ${where(n)} uses ${mb(load.rssBytes)} of memory (over ${mb(t.maxRss)})`, details: { ...base, rssBytes: load.rssBytes, max: t.maxRss } })
    }
    if (t.maxLagMs > 0 && load.lagMs > t.maxLagMs) {
      out.push({ rule: 'event-loop-lag', node: n.id, summary: `node ${where(n)} event loop lags ${Math.round(load.lagMs)} ms (over ${t.maxLagMs} ms)`, details: { ...base, lagMs: load.lagMs, max: t.maxLagMs } })
    }
    if (t.pendingUploads > 0 && (load.pendingUploads ?? 0) >= t.pendingUploads) {
      out.push({ rule: 'pending-uploads', node: n.id, summary: `fileserver ${where(n)} holds ${load.pendingUploads} uploads not yet in the blob store (alert from ${t.pendingUploads})`, details: { ...base, pendingUploads: load.pendingUploads, max: t.pendingUploads } })
    }
  }
  if (s.tasks !== null) {
    if (t.deadLetters > 0 && s.tasks.dead >= t.deadLetters) {
      out.push({ rule: 'dead-letters', node: null, summary: `task queue: ${s.tasks.dead} dead letter(s) (admin tasks --dead)`, details: { dead: s.tasks.dead, threshold: t.deadLetters } })
    }
    const growing = backlogGrowing(s.readyHistory)
    if (t.taskBacklog > 0 && (s.tasks.ready >= t.taskBacklog || growing)) {
      const why = s.tasks.ready >= t.taskBacklog ? `${s.tasks.ready} tasks ready (alert from ${t.taskBacklog})` : `${s.tasks.ready} tasks ready and growing for ${BACKLOG_GROWTH_ROUNDS} rounds`
      out.push({ rule: 'task-backlog', node: null, summary: `task queue backlog: ${why}`, details: { ready: s.tasks.ready, threshold: t.taskBacklog, history: [...s.readyHistory] } })
    }
  }
  const b = s.build
  if (b !== null && b.state === 'refused') {
    out.push({ rule: 'build-refused', node: null, summary: `build ${b.id} was refused${b.refused.length > 0 ? ` by ${b.refused.map((r) => `${r.node} (${r.code})`).join(', ')}` : ''}; it is current nowhere`, details: { build: b.id, refused: b.refused.slice(0, 20) } })
  }
  if (b !== null && (b.state === 'staging' || b.state === 'canary') && s.now - b.at > t.buildDeadlineMs) {
    out.push({ rule: 'build-stuck', node: null, summary: `build ${b.id} still ${b.state} ${Math.round((s.now - b.at) / 1000)} s after its push (deadline ${Math.round(t.buildDeadlineMs / 1000)} s)`, details: { build: b.id, state: b.state, at: b.at, deadlineMs: t.buildDeadlineMs } })
  }
  if (s.seedLinkDownSince !== null && s.now - s.seedLinkDownSince >= s.seedLinkGraceMs) {
    out.push({ rule: 'seed-link', node: null, summary: `the admin node has reached no seed for ${Math.round((s.now - s.seedLinkDownSince) / 1000)} s: the registry, task counts and builds are not seen (nodes are still probed)`, details: { since: s.seedLinkDownSince } })
  }
  const lc = s.seedLeaderChange ?? null
  if (lc !== null && s.now - lc.at < (s.seedLeaderQuietMs ?? 0)) {
    const more = lc.changes > 1 ? `; ${lc.changes} changes since ${new Date(lc.firstAt).toISOString()}` : ''
    out.push({ rule: 'seed-leader', node: null, summary: `seed leader changed: ${lc.from ?? 'none'} → ${lc.to ?? 'unknown yet'} (epoch ${lc.epoch})${more}`, details: { ...lc } })
  }
  return out
}

/** Why a watched node is down, or null when it is not. */
function downReason(n: WatchedNode, t: RuleThresholds): string | null {
  if (n.gone !== null) return `left the seed's registry (${n.gone})${n.failures > 0 ? `; ${n.failures} probe(s) failed (${n.lastProbe?.error ?? 'no answer'})` : ''}`
  if (n.view?.health === 'suspect') return 'the seed lost its link (suspect)'
  if (n.failures >= t.downAfter) return `${n.failures} probes in a row failed (${n.lastProbe?.error ?? 'no answer'})`
  return null
}

/** True when the ready count grew at each of the last {@link BACKLOG_GROWTH_ROUNDS} rounds. */
export function backlogGrowing(history: readonly number[]): boolean {
  if (history.length < BACKLOG_GROWTH_ROUNDS + 1) return false
  const last = history.slice(-(BACKLOG_GROWTH_ROUNDS + 1))
  return last.every((v, i) => i === 0 || v > last[i - 1]!)
}
