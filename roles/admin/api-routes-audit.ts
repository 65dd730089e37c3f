/** `GET /api/audit`: the audit log, newest first, paged with `before` (roles/admin/api-audit.ts). */
import type { ApiDeps } from './api-deps.js'
import { AUDIT_ID, listAudit } from './api-audit.js'
import { onlyQuery, pathParam, queryLimit } from './api-fields.js'
import type { ApiRoute } from './api-router.js'

function before(query: URLSearchParams): string | undefined {
  const raw = query.get('before')
  return raw === null ? undefined : pathParam(raw, 'before', AUDIT_ID, 'an audit entry id (the `next` of the previous page)')
}

export const AUDIT_ROUTES: readonly ApiRoute<ApiDeps>[] = [
  {
    method: 'GET', path: '/api/audit', action: 'audit.read', acts: false,
    check: (c) => {
      onlyQuery(c.query, ['limit', 'before'])
      return { target: null, params: { limit: queryLimit(c.query, 1000, 100), before: before(c.query) ?? null } }
    },
    run: async (c, d) => {
      const b = before(c.query)
      return { status: 200, body: await listAudit(d.link.datastore, { limit: queryLimit(c.query, 1000, 100), ...(b !== undefined ? { before: b } : {}) }) }
    },
  },
]
