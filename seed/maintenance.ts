/**
 * Planned maintenance on the seed (docs/meta-protocol.md, "Maintenance";
 * docs/operations.md, "Planned maintenance"). The seed is the one writer:
 * `maintenance.set` / `maintenance.clear` (admin peers only) write the record
 * (datastore kind `cluster`, key `maintenance`) and then push it to every
 * registered node, so the write and the push happen in one place. Every node
 * also gets the record when it registers, so a node that restarts (or
 * reconnects after the seed restarted, or missed a change while cut off)
 * holds the current state.
 *
 * The record ends by itself at its `until`: a timer here clears it and
 * pushes that; a record found expired when the seed starts is dropped. Nodes
 * do not rely on the push for the end: they stop answering for it at `until`
 * by their own clock (lib/http/maintenance.ts).
 *
 * Changes, expiry and the pushes on register run one at a time, so a push
 * always carries the state just written, in order.
 */
import type { Logger } from '../lib/core/log.js'
import type { MaintenanceState } from '../lib/core/node-state.js'
import { checkMaintenanceRequest, parseMaintenanceState } from '../lib/http/maintenance.js'
import type { Datastore } from '../lib/storage/datastore.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { adminOnly } from './admin-only.js'
import { encodeMessage } from '../lib/transport/meta-frames.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'

export const MAINTENANCE_KIND = 'cluster'
export const MAINTENANCE_KEY = 'maintenance'
/** The push op; body `{state: MaintenanceState | null}`. */
export const MAINTENANCE_PUSH = 'maintenance'
/** setTimeout's longest delay; a longer wait is re-armed (the 7-day maximum is far below it, but a record is only data). */
const MAX_TIMER_MS = 2 ** 31 - 1

export interface SeedMaintenance {
  readonly handlers: [string, RequestHandler<MetaPeer>][]
  /** A node registered on this connection: it gets the current state now and every change from now on. */
  registered(peer: MetaPeer): void
  peerClosed(peer: MetaPeer): void
  /** Reads the stored record again (a seed that just took the lead). */
  reload(): Promise<void>
  close(): void
}

export function createSeedMaintenance({ datastore, log }: { datastore: Datastore; log: Logger }): SeedMaintenance {
  const nodes = new Set<MetaPeer>()
  let current: MaintenanceState | null = null
  let timer: NodeJS.Timeout | null = null
  let closed = false

  // Every op waits for the stored record; a datastore that cannot be read leaves maintenance off, said once.
  let queue: Promise<unknown> = load().catch((err: unknown) => log.error({ err }, 'stored maintenance record could not be read: none in force'))
  const serial = <T>(fn: () => T | Promise<T>): Promise<T> => {
    const run = queue.then(fn)
    queue = run.catch(() => {})
    return run
  }

  async function load(): Promise<void> {
    const value = await datastore.get(MAINTENANCE_KIND, MAINTENANCE_KEY)
    current = null
    if (timer !== null) clearTimeout(timer)
    timer = null
    if (value === null) return
    const state = parseMaintenanceState(value)
    if (state === null) {
      log.warn({ value }, 'stored maintenance record is malformed: dropped')
      await datastore.delete(MAINTENANCE_KIND, MAINTENANCE_KEY)
    } else if (state.until <= Date.now()) {
      log.info({ until: new Date(state.until).toISOString(), message: state.message }, 'maintenance ended while the seed was down: dropped')
      await datastore.delete(MAINTENANCE_KIND, MAINTENANCE_KEY)
    } else {
      current = state
      arm()
      log.info({ until: new Date(state.until).toISOString(), hosts: state.hosts, allow: state.allow }, 'maintenance in force (kept across the restart)')
    }
  }

  function push(): void {
    const frame = encodeMessage(MAINTENANCE_PUSH, { state: current })
    for (const peer of nodes) peer.session.sendEncoded(frame)
  }

  function arm(): void {
    if (timer !== null) clearTimeout(timer)
    timer = null
    if (current === null || closed) return
    const state = current
    timer = setTimeout(() => {
      timer = null
      void serial(async () => {
        if (current !== state) return
        if (Date.now() < state.until) return arm()
        await datastore.delete(MAINTENANCE_KIND, MAINTENANCE_KEY)
        current = null
        push()
        log.info({ until: new Date(state.until).toISOString(), reason: 'expired' }, 'maintenance over: its time is up')
      }).catch((err: unknown) => log.error({ err }, 'maintenance could not be ended at its time; nodes end it by their own clocks'))
    }, Math.min(MAX_TIMER_MS, Math.max(0, state.until - Date.now())))
    timer.unref()
  }

  const set: RequestHandler<MetaPeer> = (body, peer) => {
    adminOnly(peer, 'maintenance.set')
    // Checked against the seed's clock at once; written in turn.
    const wanted = checkMaintenanceRequest(body, Date.now())
    return serial(async () => {
      const state: MaintenanceState = Object.freeze({ ...wanted, at: Date.now() })
      await datastore.put(MAINTENANCE_KIND, MAINTENANCE_KEY, { ...state })
      const previous = current
      current = state
      arm()
      push()
      log.info({ message: state.message, until: new Date(state.until).toISOString(), hosts: state.hosts, allow: state.allow, by: peer.remote, replaced: previous !== null }, 'maintenance on')
      return { state, nodes: nodes.size }
    })
  }

  const clear: RequestHandler<MetaPeer> = (_body, peer) => {
    adminOnly(peer, 'maintenance.clear')
    return serial(async () => {
      const previous = current
      await datastore.delete(MAINTENANCE_KIND, MAINTENANCE_KEY)
      current = null
      arm()
      // Pushed even when nothing was on: a node that missed an end (or holds a stale state) is told again.
      push()
      if (previous !== null) log.info({ by: peer.remote, reason: 'cleared' }, 'maintenance over')
      return { cleared: previous !== null, nodes: nodes.size }
    })
  }

  const get: RequestHandler<MetaPeer> = (_body, peer) => {
    adminOnly(peer, 'maintenance.get')
    return serial(() => ({ state: current, now: Date.now() }))
  }

  return {
    handlers: [['maintenance.set', set], ['maintenance.clear', clear], ['maintenance.get', get]],
    registered(peer) {
      nodes.add(peer)
      void serial(() => {
        if (nodes.has(peer)) peer.session.send(MAINTENANCE_PUSH, { state: current })
      }).catch(() => {})
    },
    peerClosed(peer) {
      nodes.delete(peer)
    },
    reload: () => serial(load).catch((err: unknown) => log.error({ err }, 'stored maintenance record could not be read: none in force')),
    close() {
      closed = true
      if (timer !== null) clearTimeout(timer)
      timer = null
    },
  }
}
