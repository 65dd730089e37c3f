/**
 * Admin API routes over the cluster: status, nodes, drain orders,
 * maintenance and rolling restarts (docs/admin-api.md). Each checks its
 * input with the CLI's own rules, then calls the operation the CLI calls.
 */
import { createError } from '../../lib/core/errors.js'
import { DRAIN_THEN, NODE_ID_TEXT, type DrainThen } from '../../lib/transport/drain-order.js'
import { NODE_ID } from '../../lib/transport/meta-shapes.js'
import type { ApiDeps } from './api-deps.js'
import {
  asBadRequest, asObject, badField, onlyFields, onlyQuery, optBoolean, optDurationText, optIntegerText, optString, optStringList, pathParam,
} from './api-fields.js'
import { JOB_ID } from './api-jobs.js'
import type { ApiRoute } from './api-router.js'
import { orderDrain, orderUndrain, parseGrace } from '../../lib/cli/admin/drain.js'
import { clearMaintenance, maintenanceBody, readMaintenance, setMaintenance } from '../../lib/cli/admin/maintenance.js'
import { planOf } from '../../lib/cli/admin/rolling-restart.js'
import { listNodes, readStatus } from '../../lib/cli/admin/status.js'

type Route = ApiRoute<ApiDeps>

const nodeId = (params: Readonly<Record<string, string>>): string => pathParam(params['id']!, 'id', NODE_ID, `a node id (${NODE_ID_TEXT})`)
const read = { acts: false, check: () => ({ target: null, params: {} }) } as const
const noQuery = (q: URLSearchParams): void => onlyQuery(q, [])

export const CLUSTER_ROUTES: readonly Route[] = [
  {
    ...read, method: 'GET', path: '/api/status', action: 'status.read',
    check: (c) => (noQuery(c.query), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: await readStatus(d.link.client, d.link.tasks, d.seedAddress()) }),
  },
  {
    ...read, method: 'GET', path: '/api/nodes', action: 'nodes.read',
    check: (c) => (noQuery(c.query), { target: null, params: {} }),
    // Exactly the objects `admin nodes --json` prints.
    run: async (_c, d) => ({ status: 200, body: await listNodes(d.link.client) }),
  },
  {
    ...read, method: 'GET', path: '/api/nodes/:id', action: 'node.read',
    check: (c) => (noQuery(c.query), { target: nodeId(c.params), params: {} }),
    run: async (c, d) => {
      const node = (await listNodes(d.link.client)).find((n) => n.id === c.params['id'])
      if (node === undefined) throw createError('ESPRA_ERR_NODE_UNKNOWN', { state: 'registered', id: c.params['id'] ?? '', hint: 'GET /api/nodes lists them' })
      return { status: 200, body: node }
    },
  },
  {
    method: 'POST', path: '/api/nodes/:id/drain', action: 'node.drain', acts: true,
    check: (c) => {
      noQuery(c.query)
      onlyFields(c.body, ['then', 'grace', 'force'])
      const then = optString(c.body, 'then', 16) ?? 'stop'
      if (!DRAIN_THEN.includes(then as DrainThen)) throw badField('then', `must be one of ${DRAIN_THEN.join(', ')}`)
      const grace = optDurationText(c.body, 'grace')
      const graceMs = asBadRequest(() => parseGrace(grace))
      return { target: nodeId(c.params), params: { then, graceMs, force: optBoolean(c.body, 'force') ?? false } }
    },
    run: async (c, d) => {
      const p = drainParams(c.body)
      return { status: 200, body: await orderDrain(d.link.client, { id: c.params['id']!, ...p }) }
    },
  },
  {
    method: 'POST', path: '/api/nodes/:id/undrain', action: 'node.undrain', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: nodeId(c.params), params: {} }),
    run: async (c, d) => ({ status: 200, body: await orderUndrain(d.link.client, c.params['id']!) }),
  },
  {
    ...read, method: 'GET', path: '/api/maintenance', action: 'maintenance.read',
    check: (c) => (noQuery(c.query), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: await readMaintenance(d.link.client) }),
  },
  {
    method: 'POST', path: '/api/maintenance', action: 'maintenance.set', acts: true,
    check: (c) => (noQuery(c.query), { target: null, params: maintenanceParams(c.body) }),
    run: async (c, d) => ({ status: 200, body: await setMaintenance(d.link.client, maintenanceParams(c.body)) }),
  },
  {
    method: 'DELETE', path: '/api/maintenance', action: 'maintenance.clear', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: await clearMaintenance(d.link.client) }),
  },
  {
    method: 'POST', path: '/api/rolling-restarts', action: 'rolling-restart.start', acts: true,
    check: (c) => {
      noQuery(c.query)
      const plan = rollingPlan(c.body)
      return { target: plan.role, params: { ...plan } }
    },
    run: async (c, d) => {
      const job = await d.jobs.start(rollingPlan(c.body), c.operator.name)
      return { status: 202, body: { ...job, href: `/api/rolling-restarts/${job.id}` } }
    },
  },
  {
    ...read, method: 'GET', path: '/api/rolling-restarts/:id', action: 'rolling-restart.read',
    check: (c) => (noQuery(c.query), { target: pathParam(c.params['id']!, 'id', JOB_ID, 'a rolling restart id such as rr-mib2x3k0-0a1b2c3d'), params: {} }),
    run: async (c, d) => {
      const job = await d.jobs.read(c.params['id']!)
      if (job === null) throw createError('ESPRA_ERR_ADMIN_JOB_NOT_FOUND', { id: c.params['id'] ?? '' })
      return { status: 200, body: job }
    },
  },
]

function drainParams(body: Record<string, unknown>): { then: DrainThen; graceMs: number; force: boolean } {
  const then = (optString(body, 'then', 16) ?? 'stop') as DrainThen
  return { then, graceMs: parseGrace(optDurationText(body, 'grace')), force: optBoolean(body, 'force') ?? false }
}

/** `{message?, until, hosts?, allow?}` checked by the CLI's own rules (`until`: a duration or an ISO-8601 time). */
function maintenanceParams(raw: Record<string, unknown>): Record<string, unknown> {
  const body = asObject(raw)
  onlyFields(body, ['message', 'until', 'hosts', 'allow'])
  const until = body['until']
  if (typeof until !== 'string' && until !== undefined) throw badField('until', 'must be a duration such as 90m or 2h, or an ISO-8601 time')
  const message = optString(body, 'message', 2000)
  const hosts = optStringList(body, 'hosts')
  const allow = optStringList(body, 'allow')
  return asBadRequest(() => maintenanceBody({
    ...(until !== undefined ? { until } : {}), ...(message !== undefined ? { message } : {}),
    ...(hosts !== undefined ? { hosts } : {}), ...(allow !== undefined ? { allow } : {}),
  }))
}

function rollingPlan(body: Record<string, unknown>) {
  onlyFields(body, ['role', 'region', 'batch', 'minHealthy', 'timeout', 'mode', 'grace'])
  const role = optString(body, 'role', 32)
  const region = optString(body, 'region', 64)
  const batch = optIntegerText(body, 'batch')
  const minHealthy = optIntegerText(body, 'minHealthy')
  const timeout = optDurationText(body, 'timeout')
  const mode = optString(body, 'mode', 16)
  const grace = optDurationText(body, 'grace')
  return asBadRequest(() => planOf({
    ...(role !== undefined ? { role } : {}), ...(region !== undefined ? { region } : {}), ...(batch !== undefined ? { batch } : {}),
    ...(minHealthy !== undefined ? { minHealthy } : {}), ...(timeout !== undefined ? { timeout } : {}),
    ...(mode !== undefined ? { mode } : {}), ...(grace !== undefined ? { grace } : {}),
  }))
}
