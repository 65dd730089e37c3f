/**
 * `GET /api/history`: requests/s and connections per role, sampled from the
 * registry every 10 s for the last hour by this admin child
 * (roles/admin/dashboard/registry-watch.ts). What the dashboard's charts draw.
 */
import type { ApiDeps } from '../api-deps.js'
import { onlyQuery } from '../api-fields.js'
import type { ApiRoute } from '../api-router.js'

export const HISTORY_ROUTES: readonly ApiRoute<ApiDeps>[] = [
  {
    method: 'GET', path: '/api/history', action: 'history.read', acts: false,
    check: (c) => (onlyQuery(c.query, []), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: d.watch.history() }),
  },
]
