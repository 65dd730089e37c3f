/**
 * The alert engine: one state machine from "which conditions fail now" to
 * incidents and notifications (docs/alerts.md). Pure: the caller hands it
 * the whole set of failing conditions with the time at every evaluation, and
 * gets alert records to persist and notifications to send through callbacks.
 *
 * - One alert per incident: a (rule, node) failing while an alert holds it
 *   opens nothing new.
 * - Grouping: a new incident waits `groupWindowMs` for others of the same
 *   rule; two or more nodes make one grouped alert listing them.
 * - Flapping: lib/alerts/flap.ts; a member resolves only once its condition
 *   is clear and its penalty is low, so a flapping node stays one alert.
 * - Silences: a notification an active silence matches is not sent; the
 *   record still changes (a resolve is recorded) and says which silence.
 */
import { randomBytes } from 'node:crypto'
import type { AlertEventType, AlertMember, AlertNotification, AlertRecord, Condition, RuleName, Silence } from './alert.js'
import { silenceMatches } from './alert.js'
import { addChange, decayed, FLAPPING_AT, releaseInMs, type Penalty } from './flap.js'

export interface AlertEngineOptions {
  readonly groupWindowMs: number
  readonly halfLifeMs: number
  /** Called after every change of a record, in order; the caller persists it. */
  readonly save: (alert: AlertRecord) => void
  /** Called for each notification to send (never for a silenced one). */
  readonly notify: (notification: AlertNotification) => void
}

export interface AlertEngine {
  /** Takes the alerts a previous run left open, so a restart neither alerts them again nor forgets them. Call before the first evaluation. */
  restore(open: readonly AlertRecord[]): void
  /** The silences in force (replaces the previous list). */
  setSilences(silences: readonly Silence[]): void
  /** Every condition failing at `now`; opens, groups and resolves alerts accordingly. */
  evaluate(conditions: readonly Condition[], now: number): void
  /** The open alerts, newest first (copies). */
  open(): AlertRecord[]
}

const keyOf = (rule: RuleName, node: string | null): string => `${rule}\0${node ?? ''}`

/** Alert ids sort newest first: 16 digits counting down from the year 2255, then 6 random hex digits. */
export function newAlertId(openedAt: number): string {
  return `${String(9e15 - openedAt).padStart(16, '0')}-${randomBytes(3).toString('hex')}`
}

interface Held {
  alert: AlertRecord
  member: AlertMember
}

interface PendingGroup {
  since: number
  items: Map<string, Condition>
}

export function createAlertEngine(opts: AlertEngineOptions): AlertEngine {
  const { groupWindowMs, halfLifeMs } = opts
  const penalties = new Map<string, Penalty>()
  const failing = new Map<string, Condition>()
  const held = new Map<string, Held>()
  const pending = new Map<RuleName, PendingGroup>()
  const openAlerts = new Map<string, AlertRecord>()
  let silences: readonly Silence[] = []

  const penaltyOf = (key: string, now: number): Penalty => {
    let p = penalties.get(key)
    if (p === undefined) penalties.set(key, (p = { value: 0, at: now }))
    return p
  }

  function silencing(alert: AlertRecord, now: number): Silence | null {
    return silences.find((s) => silenceMatches(s, alert, now)) ?? null
  }

  function send(alert: AlertRecord, event: AlertEventType, now: number): boolean {
    const silence = silencing(alert, now)
    if (silence !== null) {
      alert.silencedBy = silence.id
      return false
    }
    opts.notify({ event, alert: structuredClone(alert) })
    return true
  }

  function changed(key: string, now: number): void {
    const value = addChange(penaltyOf(key, now), now, halfLifeMs)
    const h = held.get(key)
    if (h === undefined) return
    h.alert.changes++
    if (value >= FLAPPING_AT && !h.alert.flapping) {
      h.alert.flapping = true
      h.alert.updatedAt = now
      opts.save(h.alert)
    }
  }

  /** Forgets penalties that decayed to nothing, so the map holds only what flapped lately. */
  function prune(now: number): void {
    for (const [key, p] of penalties) {
      if (!failing.has(key) && !held.has(key) && decayed(p, now, halfLifeMs) < 0.01) penalties.delete(key)
    }
  }

  function openAlert(rule: RuleName, items: Condition[], now: number): void {
    const members: AlertMember[] = items
      .sort((a, b) => (a.node ?? '').localeCompare(b.node ?? ''))
      .map((c) => ({ node: c.node, openedAt: now, resolvedAt: null, summary: c.summary, details: { ...c.details } }))
    const grouped = members.length > 1
    const nodes = members.flatMap((m) => (m.node === null ? [] : [m.node]))
    const alert: AlertRecord = {
      id: newAlertId(now), rule, node: grouped ? null : members[0]!.node, nodes, grouped, state: 'open',
      openedAt: now, resolvedAt: null,
      summary: grouped ? `${rule} on ${nodes.length} nodes: ${nodes.join(', ')}` : members[0]!.summary,
      // A grouped alert's figures are in its members, once: the record must stay far under the datastore's 64 KB.
      details: grouped ? { count: members.length } : { ...members[0]!.details },
      members, flapping: false, changes: 0, notified: { opened: false, resolved: false }, silencedBy: null, updatedAt: now,
    }
    openAlerts.set(alert.id, alert)
    for (const member of members) {
      const key = keyOf(rule, member.node)
      held.set(key, { alert, member })
      if (decayed(penaltyOf(key, now), now, halfLifeMs) >= FLAPPING_AT) alert.flapping = true
    }
    alert.notified.opened = send(alert, grouped ? 'grouped' : 'opened', now)
    opts.save(alert)
  }

  function flush(now: number): void {
    for (const [rule, group] of pending) {
      if (now - group.since < groupWindowMs) continue
      pending.delete(rule)
      // Silenced nodes get alerts of their own (recorded, not notified), so a silence never hides another node.
      const items = [...group.items.values()]
      const silenced = items.filter((c) => silences.some((s) => silenceMatches(s, { rule, nodes: c.node === null ? [] : [c.node] }, now)))
      const loud = items.filter((c) => !silenced.includes(c))
      for (const c of silenced) openAlert(rule, [c], now)
      // Window 0: never grouped.
      if (groupWindowMs === 0) for (const c of loud) openAlert(rule, [c], now)
      else if (loud.length > 0) openAlert(rule, loud, now)
    }
  }

  function resolveClear(now: number): void {
    for (const alert of openAlerts.values()) {
      let touched = false
      for (const member of alert.members) {
        if (member.resolvedAt !== null) continue
        const key = keyOf(alert.rule, member.node)
        if (failing.has(key) || releaseInMs(penaltyOf(key, now), now, halfLifeMs) > 0) continue
        member.resolvedAt = now
        held.delete(key)
        touched = true
      }
      if (!touched) continue
      alert.updatedAt = now
      if (alert.members.every((m) => m.resolvedAt !== null)) {
        alert.state = 'resolved'
        alert.resolvedAt = now
        openAlerts.delete(alert.id)
        // A resolve is told only to whoever heard the opening, and not while a silence matches.
        alert.notified.resolved = alert.notified.opened && send(alert, 'resolved', now)
      }
      opts.save(alert)
    }
  }

  return {
    restore(records) {
      for (const record of records) {
        if (record.state !== 'open' || openAlerts.has(record.id)) continue
        const alert = structuredClone(record)
        openAlerts.set(alert.id, alert)
        for (const member of alert.members) {
          if (member.resolvedAt !== null) continue
          const key = keyOf(alert.rule, member.node)
          held.set(key, { alert, member })
          // Failing until an evaluation says otherwise: a condition still failing after the restart changes nothing.
          failing.set(key, { rule: alert.rule, node: member.node, summary: member.summary, details: member.details })
        }
      }
    },
    setSilences(list) {
      silences = list.map((s) => ({ ...s }))
    },
    evaluate(conditions, now) {
      const seen = new Map<string, Condition>()
      for (const c of conditions) seen.set(keyOf(c.rule, c.node), c)
      for (const [key, c] of seen) {
        if (!failing.has(key)) changed(key, now)
        failing.set(key, c)
        const h = held.get(key)
        if (h !== undefined) {
          // Keep the member's latest figures; the record is saved when its summary changes.
          h.member.details = { ...c.details }
          if (h.member.summary !== c.summary) {
            h.member.summary = c.summary
            if (!h.alert.grouped) h.alert.summary = c.summary
            h.alert.updatedAt = now
            opts.save(h.alert)
          }
          continue
        }
        let group = pending.get(c.rule)
        if (group === undefined) pending.set(c.rule, (group = { since: now, items: new Map() }))
        group.items.set(key, c)
      }
      for (const key of [...failing.keys()]) {
        if (seen.has(key)) continue
        failing.delete(key)
        changed(key, now)
      }
      flush(now)
      resolveClear(now)
      prune(now)
    },
    open() {
      return [...openAlerts.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((a) => structuredClone(a))
    },
  }
}
