/**
 * Admin API routes over what the cluster serves: builds (a push over HTTP:
 * api-routes-push.ts), the task queue,
 * vhost mappings and minted tokens (docs/admin-api.md). Each checks its
 * input with the CLI's own rules, then calls the operation the CLI calls.
 */
import { parseDuration, parseSize } from '../../lib/core/config-parsers.js'
import { isBuildId } from '../../lib/builds/manifest.js'
import { isChannelPattern } from '../../lib/live/channel.js'
import { createError } from '../../lib/core/errors.js'
import { TASK_ID } from '../../lib/tasks/task.js'
import { fileSha256, hostProblem, normalizeHost, pathProblem } from '../../lib/vhosts/vhost.js'
import type { ApiDeps } from './api-deps.js'
import { asBadRequest, badField, onlyFields, onlyQuery, optBoolean, optDurationText, optString, optStringList, pathParam, queryFlag, queryLimit, reqString, type Body } from './api-fields.js'
import type { ApiRoute } from './api-router.js'
import { listBuilds, readBuildStatus, startRollback } from '../../lib/cli/admin/builds.js'
import { deleteDeadTask, readTasks, retryTask } from '../../lib/cli/admin/tasks.js'
import { mintLiveToken } from '../../lib/cli/admin/token.js'
import { mintUpload } from '../../lib/cli/admin/upload-token.js'
import { listVhosts, removeVhost, setVhost } from '../../lib/cli/admin/vhost.js'

type Route = ApiRoute<ApiDeps>

const buildId = (raw: string): string => pathParam(raw, 'id', /^b[1-9][0-9]{0,11}$/, 'a build id such as b12')
const noQuery = (q: URLSearchParams): void => onlyQuery(q, [])

function host(raw: string | undefined, field = 'host'): string {
  if (raw === undefined) throw badField(field, 'is required')
  const h = normalizeHost(raw)
  const problem = hostProblem(h)
  if (problem) throw badField(field, problem)
  return h
}

function path(raw: string | undefined): string {
  if (raw === undefined) throw badField('path', 'is required')
  const problem = pathProblem(raw)
  if (problem) throw badField('path', problem)
  return raw
}

function vhostSet(body: Body) {
  onlyFields(body, ['host', 'path', 'file', 'force'])
  const h = host(optString(body, 'host', 300))
  const p = path(optString(body, 'path', 300))
  const file = reqString(body, 'file', 100)
  const sha256 = fileSha256(file)
  if (sha256 === null) throw badField('file', 'must be the key an upload answered, files/<sha256> (64 lower-case hex digits)')
  return { host: h, path: p, sha256, force: optBoolean(body, 'force') ?? false }
}

function vhostRm(body: Body) {
  onlyFields(body, ['host', 'path'])
  const h = host(optString(body, 'host', 300))
  const raw = optString(body, 'path', 300)
  return { host: h, path: raw === undefined ? undefined : path(raw) }
}

const list = (body: Body, field: string): string[] => optStringList(body, field, 100, 128) ?? []

function channels(body: Body, field: string): string[] {
  const patterns = list(body, field)
  for (const p of patterns) if (!isChannelPattern(p)) throw badField(field, `'${String(p).slice(0, 130)}' is not a channel pattern (letters, digits, _ - : . @ and *, at most 128)`)
  return patterns
}

function liveMint(body: Body) {
  onlyFields(body, ['sub', 'pub', 'presence', 'ttl', 'user', 'info'])
  const ttl = optDurationText(body, 'ttl') ?? '1h'
  const user = optString(body, 'user', 128)
  const info = body['info']
  if (info !== undefined && (typeof info !== 'object' || info === null || Array.isArray(info))) throw badField('info', 'must be a JSON object')
  if (info !== undefined && JSON.stringify(info).length > 4096) throw badField('info', 'must be at most 4096 bytes of JSON')
  return {
    sub: channels(body, 'sub'), pub: channels(body, 'pub'), presence: channels(body, 'presence'), ttlMs: asBadRequest(() => parseDuration(ttl)),
    ...(user !== undefined ? { user } : {}), ...(info !== undefined ? { info: info as Record<string, unknown> } : {}),
  }
}

function uploadMint(body: Body) {
  onlyFields(body, ['maxSize', 'types', 'ttl', 'owner', 'channel', 'inline'])
  const rawSize = body['maxSize']
  if (rawSize !== undefined && typeof rawSize !== 'string' && typeof rawSize !== 'number') throw badField('maxSize', 'must be a size such as 10MB or a number of bytes')
  let maxSize: number
  try {
    maxSize = parseSize(rawSize ?? '10MB')
  } catch (reason) {
    throw badField('maxSize', String(reason))
  }
  const ttl = optDurationText(body, 'ttl') ?? '1h'
  const owner = optString(body, 'owner', 128)
  const channel = optString(body, 'channel', 128)
  return {
    maxSize, types: list(body, 'types'), ttlMs: asBadRequest(() => parseDuration(ttl)),
    ...(owner !== undefined ? { owner } : {}), ...(channel !== undefined ? { channel } : {}), ...(optBoolean(body, 'inline') ? { inline: true } : {}),
  }
}

/** A token minted: the answer carries it, the audit log only the claims asked for. */
const mintFacts = (mint: Record<string, unknown>) => ({ target: null, params: mint })

export const DEPLOY_ROUTES: readonly Route[] = [
  {
    method: 'GET', path: '/api/builds', action: 'builds.read', acts: false,
    check: (c) => (noQuery(c.query), { target: null, params: {} }),
    run: async (_c, d) => ({ status: 200, body: await listBuilds(d.link.client) }),
  },
  {
    method: 'GET', path: '/api/builds/:id', action: 'build.read', acts: false,
    check: (c) => (noQuery(c.query), { target: buildId(c.params['id']!), params: {} }),
    run: async (c, d) => ({ status: 200, body: await readBuildStatus(d.link.client, c.params['id']!) }),
  },
  {
    method: 'POST', path: '/api/builds/:id/rollback', action: 'build.rollback', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: buildId(c.params['id']!), params: {} }),
    run: async (c, d) => {
      const rolled = await startRollback(d.link.client, c.params['id']!)
      if (!isBuildId(rolled.id)) throw createError('ESPRA_ERR_INTERNAL', { reason: 'the seed answered a rollback without a build id' })
      return { status: 202, body: { ...rolled, href: `/api/builds/${rolled.id}` } }
    },
  },
  {
    method: 'GET', path: '/api/tasks', action: 'tasks.read', acts: false,
    check: (c) => {
      onlyQuery(c.query, ['dead', 'limit'])
      return { target: null, params: { dead: queryFlag(c.query, 'dead'), limit: queryLimit(c.query, 1000, 100) } }
    },
    run: async (c, d) => ({ status: 200, body: await readTasks(d.link.tasks, { dead: queryFlag(c.query, 'dead'), limit: queryLimit(c.query, 1000, 100) }) }),
  },
  {
    method: 'POST', path: '/api/tasks/:id/retry', action: 'task.retry', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: pathParam(c.params['id']!, 'id', TASK_ID, 'a task id such as t42'), params: {} }),
    run: async (c, d) => ({ status: 200, body: await retryTask(d.link.tasks, c.params['id']!) }),
  },
  {
    // Only a dead letter is deleted; the same role as retry (an operator).
    method: 'DELETE', path: '/api/tasks/:id', action: 'task.delete', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: pathParam(c.params['id']!, 'id', TASK_ID, 'a task id such as t42'), params: {} }),
    run: async (c, d) => ({ status: 200, body: await deleteDeadTask(d.link.tasks, c.params['id']!) }),
  },
  {
    method: 'GET', path: '/api/vhosts', action: 'vhosts.read', acts: false,
    check: (c) => {
      onlyQuery(c.query, ['host'])
      const only = c.query.get('host')
      return { target: only === null ? null : host(only), params: {} }
    },
    run: async (c, d) => {
      const only = c.query.get('host')
      return { status: 200, body: await listVhosts(d.link.datastore, only === null ? undefined : host(only)) }
    },
  },
  {
    method: 'PUT', path: '/api/vhosts', action: 'vhost.set', acts: true,
    check: (c) => {
      noQuery(c.query)
      const m = vhostSet(c.body)
      return { target: `${m.host}${m.path}`, params: { ...m } }
    },
    run: async (c, d) => ({ status: 200, body: await setVhost(d.link.client, vhostSet(c.body)) }),
  },
  {
    method: 'DELETE', path: '/api/vhosts', action: 'vhost.rm', acts: true,
    check: (c) => {
      noQuery(c.query)
      const m = vhostRm(c.body)
      return { target: `${m.host}${m.path ?? ''}`, params: { host: m.host, ...(m.path !== undefined ? { path: m.path } : {}) } }
    },
    run: async (c, d) => {
      const m = vhostRm(c.body)
      return { status: 200, body: await removeVhost(d.link.client, m.host, m.path) }
    },
  },
  {
    method: 'POST', path: '/api/tokens/live', action: 'token.live', acts: true,
    check: (c) => (noQuery(c.query), mintFacts(liveMint(c.body))),
    run: async (c, d) => ({ status: 201, body: asBadRequest(() => mintLiveToken(d.secret, liveMint(c.body))) }),
  },
  {
    method: 'POST', path: '/api/tokens/upload', action: 'token.upload', acts: true,
    check: (c) => (noQuery(c.query), mintFacts(uploadMint(c.body))),
    run: async (c, d) => ({ status: 201, body: await asBadRequestAsync(() => mintUpload(d.secret, d.link.datastore, uploadMint(c.body))) }),
  },
]

/** {@link asBadRequest} for a promise: the mint checks throw the CLI's usage errors. */
async function asBadRequestAsync<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    return asBadRequest(() => {
      throw err
    })
  }
}
