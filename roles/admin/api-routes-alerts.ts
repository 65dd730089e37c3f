/**
 * Admin API routes over alerts (docs/admin-api.md, docs/alerts.md): the
 * alerts the admin parent's engine keeps, silences, the sinks' state and the
 * probe histories. All of it lives in the datastore (lib/alerts/store.ts), so
 * any child answers; a silence added here is honoured by the engine within
 * a few seconds.
 */
import { createError } from '../../lib/core/errors.js'
import { addSilence, ALERT_ID, getAlert, listAlerts, listProbeHistories, listSilences, listSinkStatuses, removeSilence, SILENCE_ID } from '../../lib/alerts/store.js'
import type { AlertState } from '../../lib/alerts/alert.js'
import { NODE_ID } from '../../lib/transport/meta-shapes.js'
import { readEngineLease } from '../../lib/alerts/engine-lease.js'
import type { ApiDeps } from './api-deps.js'
import { badField, onlyFields, onlyQuery, optString, pathParam, queryFlag, queryLimit, type Body } from './api-fields.js'
import type { ApiRoute } from './api-router.js'

type Route = ApiRoute<ApiDeps>

function alertQuery(query: URLSearchParams): { state?: AlertState; limit: number; before?: string } {
  onlyQuery(query, ['state', 'limit', 'before'])
  const state = query.get('state')
  if (state !== null && state !== 'open' && state !== 'resolved') throw badField('state', 'must be open or resolved')
  const before = query.get('before')
  return {
    ...(state !== null ? { state } : {}),
    limit: queryLimit(query, 1000, 50),
    ...(before !== null ? { before: pathParam(before, 'before', ALERT_ID, 'an alert id (the `next` of the previous page)') } : {}),
  }
}

/** `until`: ms since the epoch or an ISO 8601 time. */
function until(body: Body): number {
  const v = body['until']
  const at = typeof v === 'number' ? v : typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : Number.NaN
  if (!Number.isFinite(at)) throw badField('until', 'is required: when the silence ends, in ms since the epoch or an ISO 8601 time')
  return at
}

function silenceBody(body: Body): { rule: string | null; node: string | null; until: number; comment: string } {
  onlyFields(body, ['rule', 'node', 'until', 'comment'])
  const node = optString(body, 'node', 64) ?? null
  if (node !== null && !NODE_ID.test(node)) throw badField('node', 'must be a node id')
  return { rule: optString(body, 'rule', 64) ?? null, node, until: until(body), comment: optString(body, 'comment') ?? '' }
}

export const ALERT_ROUTES: readonly Route[] = [
  {
    method: 'GET', path: '/api/alerts', action: 'alerts.read', acts: false,
    check: (c) => ({ target: null, params: { ...alertQuery(c.query) } }),
    run: async (c, d) => ({ status: 200, body: await listAlerts(d.link.datastore, alertQuery(c.query)) }),
  },
  {
    method: 'GET', path: '/api/alerts/engine', action: 'alert-engine.read', acts: false,
    check: (c) => (onlyQuery(c.query, []), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: { lease: await readEngineLease(d.link.datastore) } }),
  },
  {
    method: 'GET', path: '/api/alerts/:id', action: 'alert.read', acts: false,
    check: (c) => (onlyQuery(c.query, []), { target: pathParam(c.params['id']!, 'id', ALERT_ID, 'an alert id such as 9998235012345678-0a1b2c'), params: {} }),
    run: async (c, d) => {
      const alert = await getAlert(d.link.datastore, c.params['id']!)
      if (alert === null) throw createError('ESPRA_ERR_ALERT_NOT_FOUND', { id: c.params['id']! })
      return { status: 200, body: alert }
    },
  },
  {
    method: 'GET', path: '/api/silences', action: 'silences.read', acts: false,
    check: (c) => (onlyQuery(c.query, ['expired']), { target: null, params: { expired: queryFlag(c.query, 'expired') } }),
    run: async (c, d) => ({ status: 200, body: await listSilences(d.link.datastore, { expired: queryFlag(c.query, 'expired') }) }),
  },
  {
    method: 'POST', path: '/api/silences', action: 'silence.add', acts: true,
    check: (c) => {
      onlyQuery(c.query, [])
      const s = silenceBody(c.body)
      return { target: s.node ?? s.rule, params: s }
    },
    run: async (c, d) => {
      const { rule, node, until: at, comment } = silenceBody(c.body)
      return { status: 201, body: await addSilence(d.link.datastore, { matcher: { rule, node }, until: at, by: c.operator.name, comment }) }
    },
  },
  {
    method: 'DELETE', path: '/api/silences/:id', action: 'silence.remove', acts: true,
    check: (c) => (onlyQuery(c.query, []), onlyFields(c.body, []), { target: pathParam(c.params['id']!, 'id', SILENCE_ID, 'a silence id such as sm1abcd0a1b2c3d'), params: {} }),
    run: async (c, d) => {
      await removeSilence(d.link.datastore, c.params['id']!)
      return { status: 200, body: { id: c.params['id']!, removed: true } }
    },
  },
  {
    method: 'GET', path: '/api/alert-sinks', action: 'alert-sinks.read', acts: false,
    check: (c) => (onlyQuery(c.query, []), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: await listSinkStatuses(d.link.datastore) }),
  },
  {
    method: 'GET', path: '/api/probes', action: 'probes.read', acts: false,
    check: (c) => {
      onlyQuery(c.query, ['node'])
      const node = c.query.get('node')
      return { target: node === null ? null : pathParam(node, 'node', NODE_ID, 'a node id'), params: {} }
    },
    run: async (c, d) => ({ status: 200, body: await listProbeHistories(d.link.datastore, c.query.get('node') ?? undefined) }),
  },
]
