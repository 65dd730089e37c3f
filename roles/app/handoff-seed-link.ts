/**
 * An app child's own link to the seed for its mail handoffs' ops (the claim
 * and the outcome: mail-handoff-ops.ts), as each mail child has one for its
 * inbound groups (lib/process/child-seed-link.ts): relayed through the
 * parent each handoff cost four IPC hops and two turns of the parent's event
 * loop. Opened with the first handoff (most app nodes never handle mail, and
 * then open nothing); until it is up, and whenever it is down, the ops go
 * through the parent as `app-seed` requests (node.ts relays them). Once open
 * it carries the embedded task queue's ops too (the handoffs' lease and
 * settle); the app's other seed ops (tables, uploads, the mail queue) still go
 * through the parent.
 * `close()` lets the requests in flight (the last attempts' outcome notes)
 * finish before it closes the link.
 */
import type { ChildContext } from '../../lib/process/role.js'
import { createChildSeedLink, type ChildSeedLink } from '../../lib/process/child-seed-link.js'
import type { MetaRequester } from '../../lib/transport/resend.js'
import type { AppSeedRequest } from './server.js'

export interface HandoffSeedLink extends MetaRequester {
  /** Requests over this link once a handoff opened it, else through `other` (the task queue's lease and settle). */
  orElse(other: MetaRequester): MetaRequester
  close(): Promise<void>
  destroy(): void
}

export function createHandoffSeedLink(ctx: Pick<ChildContext, 'config' | 'log' | 'parent' | 'metrics'>): HandoffSeedLink {
  let link: ChildSeedLink | null = null
  let closed = false
  const inFlight = new Set<Promise<unknown>>()
  const relay = (op: string, body: unknown): AppSeedRequest => ({ t: 'app-seed', op, body })
  const handoffLink: HandoffSeedLink = {
    orElse(other) {
      return { request: <R>(op: string, body: unknown, timeoutMs?: number) => (link !== null && !closed ? handoffLink.request<R>(op, body, timeoutMs) : other.request<R>(op, body, timeoutMs)) }
    },
    request<R>(op: string, body: unknown, timeoutMs?: number): Promise<R> {
      if (link === null && !closed) {
        link = createChildSeedLink({ config: ctx.config, log: ctx.log, parent: ctx.parent, metrics: ctx.metrics, role: 'app', carries: 'mail handoffs: claim and outcome', relay })
      }
      const sent = link === null ? ctx.parent.request<R>(relay(op, body), timeoutMs) : link.request<R>(op, body, timeoutMs)
      const settled = sent.then(() => undefined, () => undefined)
      inFlight.add(settled)
      void settled.then(() => inFlight.delete(settled))
      return sent
    },
    async close() {
      closed = true
      await Promise.all(inFlight)
      await link?.close()
    },
    destroy() {
      closed = true
      link?.destroy()
    },
  }
  return handoffLink
}
