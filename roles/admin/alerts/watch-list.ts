/**
 * The nodes the admin node watches and what it saw of each: the seed's view
 * (the `nodes` answer every round, `event` pushes in between) and its own
 * probes. A node that deregistered (a clean stop or a drain) is forgotten; a
 * node the seed evicted or lost stays watched (and probed at its last
 * address) until it comes back, or for {@link FORGET_GONE_MS}.
 */
import type { ProbeHistory, ProbeResult } from '../../../lib/alerts/store.js'
import type { WatchedNode } from '../../../lib/alerts/rules.js'
import type { NodeEvent, NodeView } from '../../../lib/transport/meta-shapes.js'
import type { Probe } from './probe.js'

/** A node gone from the registry this long is no longer watched (its alert resolves). */
export const FORGET_GONE_MS = 24 * 3_600_000

interface Entry {
  id: string
  role: string
  address: string
  port: number
  view: NodeView | null
  gone: string | null
  goneAt: number | null
  failures: number
  history: ProbeResult[]
  body: Record<string, unknown> | null
}

export class WatchList {
  private readonly nodes = new Map<string, Entry>()
  private readonly historySize: number

  constructor(historySize: number) {
    this.historySize = historySize
  }

  /** The seed's whole list: nodes in it are registered; nodes missing from it keep their last view until probes or events say more. */
  setNodes(views: readonly NodeView[]): void {
    const listed = new Set<string>()
    for (const view of views) {
      listed.add(view.id)
      this.upsert(view)
    }
    // A node that vanished from the list without an event (e.g. the seed restarted): probes decide whether it is down.
    for (const entry of this.nodes.values()) if (!listed.has(entry.id) && entry.gone === null) entry.view = null
  }

  /** An `event` push. Returns the id of a node forgotten by it (deregistered), else null. */
  event(ev: NodeEvent): string | null {
    if (ev.type !== 'left') {
      this.upsert(ev.node)
      return null
    }
    if (ev.reason === 'deregistered') {
      this.nodes.delete(ev.node.id)
      return ev.node.id
    }
    const entry = this.upsert(ev.node)
    entry.view = null
    entry.gone = ev.reason ?? 'left'
    entry.goneAt = ev.at
    return null
  }

  /**
   * A node a previous run of the admin node had an open node-down alert for:
   * counted as down (`failures` probes failed) until a probe answers, and
   * watched as gone at the address the alert recorded unless the seed lists it.
   */
  watchDown(id: string, role: string, address: string, port: number, since: number, failures: number): void {
    let entry = this.nodes.get(id)
    if (entry === undefined) {
      entry = { id, role, address, port, view: null, gone: 'down when the admin node restarted', goneAt: since, failures: 0, history: [], body: null }
      this.nodes.set(id, entry)
    }
    entry.failures = Math.max(entry.failures, failures)
  }

  record(id: string, probe: Probe): void {
    const entry = this.nodes.get(id)
    if (entry === undefined) return
    entry.history.push(probe.result)
    if (entry.history.length > this.historySize) entry.history.splice(0, entry.history.length - this.historySize)
    entry.failures = probe.result.ok ? 0 : entry.failures + 1
    if (probe.body !== null) entry.body = probe.body
    else if (!probe.result.ok) entry.body = null
  }

  /** Forgets nodes gone for {@link FORGET_GONE_MS}; returns their ids. */
  forgetGone(now: number): string[] {
    const out: string[] = []
    for (const entry of this.nodes.values()) {
      if (entry.goneAt !== null && now - entry.goneAt > FORGET_GONE_MS) {
        this.nodes.delete(entry.id)
        out.push(entry.id)
      }
    }
    return out
  }

  targets(): { id: string; address: string; port: number }[] {
    return [...this.nodes.values()].map(({ id, address, port }) => ({ id, address, port }))
  }

  snapshot(): WatchedNode[] {
    return [...this.nodes.values()].map((e) => ({
      id: e.id, role: e.role, address: e.address, port: e.port, view: e.view, gone: e.gone, failures: e.failures,
      lastProbe: e.history.at(-1) ?? null, body: e.body,
    }))
  }

  history(id: string): ProbeHistory | null {
    const e = this.nodes.get(id)
    return e === undefined ? null : { node: e.id, address: e.address, port: e.port, results: [...e.history], failures: e.failures }
  }

  private upsert(view: NodeView): Entry {
    let entry = this.nodes.get(view.id)
    if (entry === undefined) {
      entry = { id: view.id, role: view.role, address: view.address, port: view.port, view, gone: null, goneAt: null, failures: 0, history: [], body: null }
      this.nodes.set(view.id, entry)
    }
    // A node back at another address is probed there from now on.
    if (entry.address !== view.address || entry.port !== view.port) entry.failures = 0
    Object.assign(entry, { role: view.role, address: view.address, port: view.port, view, gone: null, goneAt: null })
    return entry
  }
}
