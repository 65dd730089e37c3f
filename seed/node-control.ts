/**
 * Operator control of one node through the seed (docs/meta-protocol.md,
 * "Node control"): `node.reload` asks a node's parent, over the link it
 * registered with, to replace its children one at a time (what SIGHUP does),
 * and answers once the node reports the replacement done (`node.reloaded`),
 * so `admin rolling-restart` knows when to go on and why a node failed.
 */
import { randomUUID } from 'node:crypto'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { adminOnly } from './admin-only.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { RELOAD_PUSH } from '../lib/process/node-reload.js'
import type { ReloadSummary } from '../lib/process/supervisor.js'
import type { Registry } from './registry.js'

/** What a node reports once its children were replaced (lib/process/supervisor.ts). */
export type ReloadOutcome = ReloadSummary

const DEFAULT_TIMEOUT_MS = 120_000
const MAX_TIMEOUT_MS = 3_600_000
const NODE_ID = /^[\x21-\x7e]{1,128}$/

interface Pending {
  readonly nodeId: string
  readonly peer: MetaPeer
  resolve(outcome: ReloadOutcome): void
  reject(err: Error): void
}

export interface NodeControlOptions {
  readonly registry: Registry
  readonly log: Logger
  /** The meta server's authenticated peers (where a node's link is found). */
  peers(): ReadonlySet<MetaPeer>
}

const bad = (field: string, reason: string) => createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason })

function parseOutcome(body: Record<string, unknown>): ReloadOutcome {
  const replaced = body['replaced']
  if (!Number.isInteger(replaced) || (replaced as number) < 0 || (replaced as number) > 1024) throw bad('replaced', 'must be an integer from 0 to 1024')
  const failed = body['failed']
  if (!Array.isArray(failed) || failed.length > 1024) throw bad('failed', 'must be a list of at most 1024 entries')
  return {
    replaced: replaced as number,
    failed: failed.map((f, i) => {
      if (!isMap(f) || !Number.isInteger(f['child']) || typeof f['code'] !== 'string' || typeof f['message'] !== 'string') throw bad(`failed[${i}]`, 'must be a map {child, code, message}')
      return { child: f['child'] as number, code: f['code'].slice(0, 100), message: f['message'].slice(0, 500) }
    }),
  }
}

export function createNodeControl(opts: NodeControlOptions) {
  const { registry, log } = opts
  const pending = new Map<string, Pending>()

  const handlers: [string, RequestHandler<MetaPeer>][] = [
    ['node.reload', (body, peer) => {
      adminOnly(peer, 'node.reload')
      if (!isMap(body)) throw bad('body', 'must be a map')
      const id = body['id']
      if (typeof id !== 'string' || !NODE_ID.test(id)) throw bad('id', 'must be a node id (1 to 128 printable characters)')
      const timeoutMs = body['timeoutMs'] ?? DEFAULT_TIMEOUT_MS
      if (!Number.isInteger(timeoutMs) || (timeoutMs as number) < 1 || (timeoutMs as number) > MAX_TIMEOUT_MS) throw bad('timeoutMs', `must be an integer from 1 to ${MAX_TIMEOUT_MS}`)
      const view = registry.view(id)
      if (view === undefined) throw createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'registered', id, hint: 'admin nodes lists them' })
      if (view.childrenWanted === 0) throw createError('ESPRA_ERR_NODE_RELOAD_UNSUPPORTED', { id, role: view.role })
      const link = [...opts.peers()].find((p) => p.kind === 'node' && p.nodeId === id)
      if (link === undefined) throw createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'connected', id, hint: 'it is registered, but has no link to this seed' })
      const token = randomUUID()
      return new Promise<ReloadOutcome>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(token)
          reject(createError('ESPRA_ERR_NODE_RELOAD_TIMEOUT', { id, reason: `no answer within ${timeoutMs as number}ms` }))
        }, timeoutMs as number)
        const settle = <T>(fn: (v: T) => void) => (v: T) => {
          clearTimeout(timer)
          pending.delete(token)
          fn(v)
        }
        pending.set(token, { nodeId: id, peer: link, resolve: settle(resolve), reject: settle(reject) })
        log.info({ node: id, admin: peer.remote }, `asking node ${id} to replace its children`)
        if (!link.session.send(RELOAD_PUSH, { token })) pending.get(token)?.reject(createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'connected', id, hint: 'its link closed before the request could be sent' }))
      })
    }],
    ['node.reloaded', (body, peer) => {
      if (peer.kind !== 'node' || peer.nodeId === null) throw createError('ESPRA_ERR_META_NOT_REGISTERED')
      if (!isMap(body)) throw bad('body', 'must be a map')
      const token = body['token']
      if (typeof token !== 'string' || token.length > 64) throw bad('token', 'must be the token of the node.reload push')
      const outcome = parseOutcome(body)
      const waiter = pending.get(token)
      // Only the node that was asked may answer for it; a late or unknown token is ignored.
      if (waiter === undefined || waiter.nodeId !== peer.nodeId) return {}
      log.info({ node: peer.nodeId, ...outcome }, `node ${peer.nodeId} replaced ${outcome.replaced} children${outcome.failed.length > 0 ? `, ${outcome.failed.length} failed` : ''}`)
      if (outcome.failed.length === 0) waiter.resolve(outcome)
      else {
        const first = outcome.failed[0]!
        waiter.reject(createError('ESPRA_ERR_NODE_RELOAD_FAILED', { ...outcome, id: peer.nodeId ?? '', reason: `child ${first.child} could not be replaced (${first.code}: ${first.message}); the old child keeps serving` }))
      }
      return {}
    }],
  ]

  return {
    handlers,
    /** A node's link closed: the reloads it was asked for cannot be answered over it. */
    peerClosed(peer: MetaPeer): void {
      for (const waiter of [...pending.values()]) {
        if (waiter.peer === peer) waiter.reject(createError('ESPRA_ERR_NODE_RELOAD_FAILED', { id: waiter.nodeId, reason: 'it disconnected from the seed meanwhile' }))
      }
    },
    close(): void {
      for (const waiter of [...pending.values()]) waiter.reject(createError('ESPRA_ERR_META_CLOSED', { reason: 'the seed is stopping' }))
    },
  }
}
