/**
 * Admin API routes over mail (docs/admin-api.md): inbound messages not
 * handed to the app yet and their retry, the outbound queue, one outbound
 * message with its timeline, and the operator's retry / hold / release /
 * drop of an outbound message. The same operations as `admin mail …`.
 */
import type { ControlAction } from '../../lib/mail/outbound-control.js'
import { OUT_ID } from '../../lib/mail/outbound.js'
import type { ApiDeps } from './api-deps.js'
import { badField, onlyFields, onlyQuery, pathParam, queryFlag, queryLimit } from './api-fields.js'
import type { ApiRoute } from './api-router.js'
import { MAIL_ID, readInbound, retryInbound } from '../../lib/cli/admin/mail-inbound.js'
import { controlOut, listOutbound, OUT_STATUSES, outSummary, showOutbound } from '../../lib/cli/admin/mail-out.js'

type Route = ApiRoute<ApiDeps>

const outId = (raw: string): string => pathParam(raw, 'id', OUT_ID, 'an outbound message id such as omib2x3k00123456789ab')
const DEFAULT_STATUSES = ['queued', 'deferred', 'held']

function statuses(query: URLSearchParams): Set<string> {
  const raw = query.get('status')
  if (raw === null) return new Set(DEFAULT_STATUSES)
  const wanted = raw.split(',').filter((s) => s !== '')
  if (wanted.length === 0 || wanted.some((s) => !(OUT_STATUSES as readonly string[]).includes(s))) {
    throw badField('status', `must be a comma-separated list of ${OUT_STATUSES.join(', ')}`)
  }
  return new Set(wanted)
}

function control(action: ControlAction): Route {
  return {
    method: 'POST', path: `/api/mail/:id/${action}`, action: `mail.${action}`, acts: true,
    check: (c) => (onlyQuery(c.query, []), onlyFields(c.body, []), { target: outId(c.params['id']!), params: {} }),
    run: async (c, d) => ({ status: 200, body: await controlOut({ datastore: d.link.datastore, queue: d.link.mailQueue }, c.params['id']!, action) }),
  }
}

export const MAIL_ROUTES: readonly Route[] = [
  {
    method: 'GET', path: '/api/mail/inbound', action: 'mail.inbound.read', acts: false,
    check: (c) => {
      onlyQuery(c.query, ['failed', 'limit'])
      return { target: null, params: { failed: queryFlag(c.query, 'failed'), limit: queryLimit(c.query, 100_000, 100) } }
    },
    run: async (c, d) => {
      const { summary } = await readInbound(d.link.datastore, d.link.tasks, { failed: queryFlag(c.query, 'failed'), limit: queryLimit(c.query, 100_000, 100) })
      return { status: 200, body: summary }
    },
  },
  {
    method: 'POST', path: '/api/mail/inbound/:id/retry', action: 'mail.inbound.retry', acts: true,
    check: (c) => (onlyQuery(c.query, []), onlyFields(c.body, []), { target: pathParam(c.params['id']!, 'id', MAIL_ID, 'an inbound message id such as mmib2x3k00123456789ab'), params: {} }),
    run: async (c, d) => ({ status: 200, body: await retryInbound(d.link.datastore, d.link.tasks, c.params['id']!) }),
  },
  {
    method: 'GET', path: '/api/mail/queue', action: 'mail.queue.read', acts: false,
    check: (c) => (onlyQuery(c.query, ['status']), { target: null, params: { status: [...statuses(c.query)] } }),
    // The objects `admin mail queue --json` prints.
    run: async (c, d) => ({ status: 200, body: (await listOutbound(d.link.datastore, statuses(c.query))).map(outSummary) }),
  },
  {
    method: 'GET', path: '/api/mail/:id', action: 'mail.read', acts: false,
    check: (c) => (onlyQuery(c.query, []), { target: outId(c.params['id']!), params: {} }),
    run: async (c, d) => ({ status: 200, body: await showOutbound(d.link.datastore, c.params['id']!) }),
  },
  control('retry'),
  control('hold'),
  control('release'),
  control('drop'),
]
