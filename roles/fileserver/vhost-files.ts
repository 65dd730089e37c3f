/**
 * Vhost files in a fileserver child: a request whose Host (port dropped,
 * lower-cased) is a registered vhost is answered from the file its
 * host + path maps to (lib/vhosts/vhost.ts), through the same disk cache
 * and blob-store path as `/f/<key>` (cache-client.ts, object-answer.ts): 304, Range/206/416, HEAD,
 * stored-compressed bodies sent as stored or decompressed. A path ending in
 * `/` is served from `index.html` under it. Any other Host keeps the node's
 * usual routes.
 *
 * How a vhost request reaches this: started before any other part of the
 * child, it wraps the route methods of the child's app, so every route
 * registered after it (app assets, `/f/`, uploads, the 404 fallback) first
 * checks the Host against the set of vhosts. The check is one header read
 * and one set lookup, skipped while there are no vhosts at all. Health
 * checks (`/_espra/health`, registered before) answer on every Host.
 *
 * Cache: mappings this child looked up, bounded, least recently used
 * dropped first, with negative entries for host + path pairs that map to
 * nothing. A `vhosts.changed` push drops the entries it names (every entry
 * of a host when it names no paths; everything on `{all: true}`), and a
 * lookup that was in flight across a push is used once but not cached.
 *
 * Headers: ETag from the file's content hash (`"<sha256>"` for the bytes as
 * uploaded, `"<sha256>-gz"` for a gzip body sent as stored), Last-Modified no
 * earlier than the mapping (a mapping moved to an older file must not look
 * unmodified), `Cache-Control: public, max-age=60` (mappings change).
 */
import { sendJson } from '../../lib/http/server.js'
import { watchAbort } from '../../lib/http/stream-body.js'
import type { HttpRequest, HttpResponse, TemplatedApp } from '../../lib/http/uws.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { parseVhostsChanged } from '../../lib/transport/vhosts-changed.js'
import {
  hostPrefix, isVhostMapping, mappingKey, MAX_PATH_BYTES, requestHost, resolveRequestPath, type VhostMapping,
} from '../../lib/vhosts/vhost.js'
import type { CachedMeta } from './cache-file.js'
import type { FileServing } from './cache-client.js'
import { methodNotAllowed, readAsk, type ServeOptions } from './object-answer.js'
import type { VhostHostsMessage, VhostToParent } from './vhost-parent.js'

export const VHOST_CACHE_CONTROL = 'public, max-age=60'
/** Mappings (and, separately, unmapped pairs) a child remembers. */
const CACHE_MAX = 10_000
const LOOKUP_TIMEOUT_MS = 10_000
const ROUTE_METHODS = ['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any'] as const

type Handler = (res: HttpResponse, req: HttpRequest) => void | Promise<void>

const ENCODING_TAGS: Record<string, string> = { gzip: 'gz', br: 'br', deflate: 'deflate' }

/** Content-hash ETags: the file's sha256 names the bytes as uploaded; a compressed body gets its own tag. */
export function vhostEtags(sha256: string): (meta: CachedMeta) => { stored: string; decoded: string } {
  return (meta) => {
    const encoding = meta.contentEncoding?.toLowerCase() ?? 'identity'
    const stored = encoding === 'identity' ? `"${sha256}"` : `"${sha256}-${ENCODING_TAGS[encoding] ?? encoding}"`
    return { stored, decoded: `"${sha256}"` }
  }
}

/** Remembers up to CACHE_MAX entries, least recently used dropped first. */
class Lru<V> {
  private readonly map = new Map<string, V>()
  get(key: string): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }
  set(key: string, v: V): void {
    this.map.delete(key)
    this.map.set(key, v)
    if (this.map.size > CACHE_MAX) this.map.delete(this.map.keys().next().value!)
  }
  delete(key: string): void {
    this.map.delete(key)
  }
  deleteWhere(pred: (key: string) => boolean): void {
    for (const key of this.map.keys()) if (pred(key)) this.map.delete(key)
  }
  clear(): void {
    this.map.clear()
  }
}

/** Starts vhost serving; call it before anything else adds routes to `ctx.app`. */
export function startVhostFiles(ctx: ChildContext, files: FileServing): Handle {
  const { app, log } = ctx
  let hosts = new Set<string>()
  const mapped = new Lru<VhostMapping>()
  const unmapped = new Lru<true>()
  /** Bumped by every push: a lookup that started before one may be stale. */
  let generation = 0
  const lookups = new Map<string, { generation: number; p: Promise<VhostMapping | null> }>()

  ctx.onPush((push) => {
    if (push.op !== 'vhosts.changed') return
    let change
    try {
      change = parseVhostsChanged(push.body)
    } catch (err) {
      return log.warn({ err }, 'malformed vhosts.changed push ignored')
    }
    generation++
    if ('all' in change) {
      // The parent reloads the set of hosts and sends it (vhost-hosts); the mappings are looked up again as asked for.
      mapped.clear()
      unmapped.clear()
      return
    }
    if (change.registered) hosts.add(change.host)
    else hosts.delete(change.host)
    if (change.paths === null) {
      const prefix = hostPrefix(change.host)
      mapped.deleteWhere((k) => k.startsWith(prefix))
      unmapped.deleteWhere((k) => k.startsWith(prefix))
    } else {
      for (const path of change.paths) {
        mapped.delete(mappingKey(change.host, path))
        unmapped.delete(mappingKey(change.host, path))
      }
    }
  })
  const takeHosts = (list: unknown): void => {
    if (Array.isArray(list)) hosts = new Set(list.filter((h): h is string => typeof h === 'string'))
  }
  ctx.parent.onMessage((body) => {
    if (isMap(body) && body['t'] === 'vhost-hosts') takeHosts((body as unknown as VhostHostsMessage).hosts)
  })
  // A child forked after the last load asks the parent. The answer is the parent's set as of now, pushes
  // before it included (the parent applies a push before relaying it), so it replaces whatever came earlier.
  ctx.parent.request<string[]>({ t: 'vhost-hosts' } satisfies VhostToParent).then(
    takeHosts,
    (err: unknown) => log.warn({ err }, 'could not ask the parent for the vhost list'),
  )

  function lookup(key: string): Promise<VhostMapping | null> {
    const hit = mapped.get(key)
    if (hit !== undefined) return Promise.resolve(hit)
    if (unmapped.get(key) !== undefined) return Promise.resolve(null)
    const running = lookups.get(key)
    if (running !== undefined && running.generation === generation) return running.p
    const started = generation
    const p = ctx.parent.request<unknown>({ t: 'vhost-lookup', key } satisfies VhostToParent, LOOKUP_TIMEOUT_MS).then((value) => {
      const mapping = isVhostMapping(value) ? value : null
      if (generation === started) {
        if (mapping) mapped.set(key, mapping)
        else unmapped.set(key, true)
      }
      return mapping
    }).finally(() => {
      if (lookups.get(key)?.p === p) lookups.delete(key)
    })
    lookups.set(key, { generation: started, p })
    return p
  }

  const notFound = (res: HttpResponse, host: string, path: string) =>
    sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file ${path} on ${host}` })

  function serve(res: HttpResponse, req: HttpRequest, host: string): Promise<void> | void {
    const method = req.getMethod().toLowerCase()
    if (method !== 'get' && method !== 'head') return methodNotAllowed(res, method, 'vhost files')
    const path = resolveRequestPath(req.getUrl())
    if (path === null) return sendJson(res, 400, { code: 'ESPRA_ERR_HTTP_BAD_PATH', message: 'malformed path, or one that leaves the site' })
    // No mapping path is this long: nothing to look up.
    if (Buffer.byteLength(path) > MAX_PATH_BYTES) return notFound(res, host, path)
    const ask = readAsk(req, method, '')
    const flow = watchAbort(res)
    return lookup(mappingKey(host, path)).then((mapping) => {
      if (flow.aborted) return
      if (mapping === null) return void res.cork(() => notFound(res, host, path))
      const options: ServeOptions = { cacheControl: VHOST_CACHE_CONTROL, etags: vhostEtags(mapping.sha256), notBefore: mapping.at }
      return files.serve(res, { ...ask, key: mapping.file }, flow, options)
    })
  }

  // Every route added from now on answers vhost requests here first.
  for (const method of ROUTE_METHODS) {
    const register = (app[method] as (pattern: string, handler: Handler) => TemplatedApp).bind(app)
    ;(app as unknown as Record<string, unknown>)[method] = (pattern: string, handler: Handler) => register(pattern, (res, req) => {
      if (hosts.size > 0) {
        const host = requestHost(req.getHeader('host'))
        if (host !== null && hosts.has(host)) return serve(res, req, host)
      }
      return handler(res, req)
    })
  }

  // Nothing of its own to finish: file bodies in flight belong to `files` and the server's drain.
  return {
    async close() {},
    destroy() {},
  }
}
