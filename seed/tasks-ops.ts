/**
 * The `tasks.*` meta ops (docs/meta-protocol.md, "Task queue"): the way to
 * the task queue the seed hosts (embedded or PostgreSQL). Every body is checked before the queue is
 * touched; a bad one is answered `ESPRA_ERR_META_BAD_REQUEST` with
 * `details.field`, and the connection stays up. `enqueue`, `lease`, `settle`
 * and `retry` take an op id (`opId`): applied once per id (seed/op-memory.ts);
 * `deleteDead` needs none (a repeat answers `deleted: false`).
 */
import { createError, EspraError } from '../lib/core/errors.js'
import { DEFAULT_DEAD_LIMIT, MAX_BATCH, MAX_LEASE_MS, MAX_WAIT_MS, MIN_LEASE_MS } from '../lib/tasks/queue.js'
import { checkId, checkLeaseRefs, checkNewTask, checkSettlements, invalid } from '../lib/tasks/task.js'
import { opIdProblem } from '../lib/storage/op-id.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'
import { isMap } from '../lib/transport/meta-shapes.js'
import { storeRemembers, type OpOnce } from './op-memory.js'
import type { SeedTaskQueue } from './stores.js'

/** Room in an answer frame for everything but the payloads. */
const FRAME_OVERHEAD = 64 * 1024

function integerIn(body: Record<string, unknown>, field: string, min: number, max: number, fallback?: number): number {
  const v = body[field] ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(field, `an integer from ${min} to ${max}`)
  return v
}

/** The body's op id, checked (absent: undefined). */
function opIdOf(body: Record<string, unknown>): string | undefined {
  const problem = opIdProblem(body['opId'])
  if (problem) throw invalid(problem.field, problem.allowed)
  return (body['opId'] ?? undefined) as string | undefined
}

/** Runs `fn` on a map body; the shared task checks' `ESPRA_ERR_TASK_INVALID` becomes a bad request naming the same field. */
function op<T>(fn: (body: Record<string, unknown>, peer: MetaPeer) => Promise<T>): RequestHandler<MetaPeer> {
  return async (body, peer) => {
    try {
      if (!isMap(body)) throw invalid('body', 'a map')
      return await fn(body, peer)
    } catch (err) {
      const e = err as EspraError
      if (e.code !== 'ESPRA_ERR_TASK_INVALID') throw err
      const { field, allowed } = e.details as { field: string; allowed: string }
      throw createError('ESPRA_ERR_META_BAD_REQUEST', { ...e.details, field, reason: `must be ${allowed}` })
    }
  }
}

/** `prefix` names the queue's ops: `tasks` (the app's task queue) or `mailq` (the outbound mail queue, the same ops). */
export function taskHandlers(queue: SeedTaskQueue, maxFrame: number, prefix = 'tasks', once: OpOnce = storeRemembers): [string, RequestHandler<MetaPeer>][] {
  const maxBytes = Math.max(1, maxFrame - FRAME_OVERHEAD)
  return [
    [`${prefix}.enqueue`, op(async (body) => {
      const task = checkNewTask(body)
      return { id: await once(`${prefix}.enqueue`, opIdOf(body), (opId) => queue.enqueue(task, opId)) }
    })],
    [`${prefix}.lease`, op(async (body, peer) => {
      const options = {
        max: integerIn(body, 'max', 1, MAX_BATCH),
        leaseMs: integerIn(body, 'leaseMs', MIN_LEASE_MS, MAX_LEASE_MS),
        waitMs: integerIn(body, 'waitMs', 0, MAX_WAIT_MS, 0),
        maxBytes,
      }
      const alive = () => peer.session.state === 'open'
      return { tasks: await once(`${prefix}.lease`, opIdOf(body), (opId) => queue.lease(options, alive, opId)) }
    })],
    [`${prefix}.extend`, op(async (body) => {
      const leases = checkLeaseRefs(body['leases'], 'leases', MAX_BATCH)
      return { lost: await queue.extend(leases, integerIn(body, 'leaseMs', MIN_LEASE_MS, MAX_LEASE_MS)) }
    })],
    [`${prefix}.settle`, op(async (body) => {
      const results = checkSettlements(body['results'], MAX_BATCH)
      return { lost: await once(`${prefix}.settle`, opIdOf(body), (opId) => queue.settle(results, opId)) }
    })],
    // The backend rides along: the seed's queue may be its embedded one or PostgreSQL, and `admin tasks` says which.
    [`${prefix}.counts`, op(async () => ({ ...(await queue.counts()), backend: queue.backend }))],
    [`${prefix}.dead`, op(async (body) => {
      const after = body['after'] === undefined || body['after'] === null ? undefined : checkId(body['after'], 'after')
      const limit = integerIn(body, 'limit', 1, MAX_BATCH, DEFAULT_DEAD_LIMIT)
      return queue.deadLetters({ ...(after !== undefined ? { after } : {}), limit })
    })],
    [`${prefix}.retry`, op(async (body) => {
      const id = checkId(body['id'])
      if (!(await once(`${prefix}.retry`, opIdOf(body), (opId) => queue.retry(id, opId)))) throw createError('ESPRA_ERR_TASK_NOT_FOUND', { id, hint: 'admin tasks --dead lists them' })
      return { id }
    })],
    // No op id: a repeat finds no dead letter and answers `deleted: false`, changing nothing.
    [`${prefix}.deleteDead`, op(async (body) => ({ deleted: await queue.deleteDead(checkId(body['id'])) }))],
  ]
}
