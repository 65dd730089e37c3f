/**
 * A fileserver child serving the current app build under `--app-path`
 * (default `/app`): GET and HEAD, strong ETags, `304` on `If-None-Match`,
 * `Accept-Encoding` negotiation over the precompressed variants, one-year
 * immutable caching for content-hashed names and a short max-age otherwise,
 * `Range` over the representation sent (206, `multipart/byteranges` for
 * several, 416; the parser of `/f/`, lib/http/conditions.ts), `nosniff`. Only the
 * build's public files are loaded (app-build.ts), so server code is never
 * served. With `--files-host`, nothing of the build is served on that host:
 * uploads live there, and must not share an origin with the app's pages.
 *
 * The build in use is one reference. Every request reads it once and is
 * answered synchronously from that object; a new build is loaded whole
 * beside it and then swapped in, so no response mixes two builds.
 *
 * A staged build (loaded, waiting for the seed to activate it) also answers
 * the paths the current build lacks: during a canary deploy the canary app
 * nodes already serve it, and their pages reference its new
 * (content-hashed) asset names, while every path the current build has
 * still answers as before for the pages of the other app nodes
 * (docs/operations.md, "Canary deploys").
 */
import { pathProblem, type BuildPush } from '../../lib/builds/manifest.js'
import { createError, toWire } from '../../lib/core/errors.js'
import { accepts, multipartBody, multipartLayout, noneMatch as anyTagMatches, parseRanges } from '../../lib/http/conditions.js'
import { sendJson, statusLine } from '../../lib/http/server.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import { followBuild, waitForFirstBuild, type BuildFollower } from '../../lib/process/follow-build.js'
import type { ChildContext, Handle } from '../../lib/process/role.js'
import { unsatisfiable } from '../../lib/storage/blob-key.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { requestHost } from '../../lib/vhosts/vhost.js'
import { loadBuild, type LoadedBuild, type LoadedFile, type Variant } from './app-build.js'

/** Child → parent: which build this child serves, or that loading one failed. */
export type AssetsToParent = { t: 'serving'; id: string } | { t: 'load-failed'; id: string; code: string; message: string }

/** Picks the representation: brotli, then gzip, when the client accepts it (q > 0) and it exists. */
export function negotiate(file: LoadedFile, acceptEncoding: string): { variant: Variant; encoding: string | null } {
  if (acceptEncoding !== '') {
    if (file.br && accepts(acceptEncoding, 'br')) return { variant: file.br, encoding: 'br' }
    if (file.gzip && accepts(acceptEncoding, 'gzip')) return { variant: file.gzip, encoding: 'gzip' }
  }
  return { variant: file.identity, encoding: null }
}

/** Weak comparison (RFC 9110 13.1.2): `W/` is ignored; any of the file's variants' tags matches. */
export function noneMatch(file: LoadedFile, header: string): boolean {
  return anyTagMatches(header, [file.identity.etag, ...(file.gzip ? [file.gzip.etag] : []), ...(file.br ? [file.br.etag] : [])])
}

/**
 * The file a request path names under the app path: `/` and a trailing `/`
 * mean `index.html`. Null when the path is malformed or tries to leave the
 * build (`..`, `.`, empty segments, encoded or not, NUL, backslash).
 */
export function resolveAppPath(url: string, appPath: string): string | null {
  let rest = url.slice(appPath.length)
  if (rest === '' || rest.endsWith('/')) rest += rest === '' ? '/index.html' : 'index.html'
  let decoded: string
  try {
    decoded = decodeURIComponent(rest.slice(1))
  } catch {
    return null
  }
  return pathProblem(decoded) === null ? decoded : null
}

function answer(res: HttpResponse, req: HttpRequest, current: LoadedBuild | null, staged: LoadedBuild | null, appPath: string, filesHost: string | null): void {
  if (filesHost !== null && requestHost(req.getHeader('host')) === filesHost) {
    return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `${filesHost} serves uploaded files only; the app is on another host` })
  }
  const method = req.getMethod().toLowerCase()
  const url = req.getUrl()
  if (method !== 'get' && method !== 'head') {
    res.writeStatus(statusLine(405)).writeHeader('Allow', 'GET, HEAD').writeHeader('Content-Type', 'application/json')
      .end(JSON.stringify({ code: 'ESPRA_ERR_HTTP_METHOD', message: `${method.toUpperCase()} is not allowed on app files` }))
    return
  }
  const path = resolveAppPath(url, appPath)
  if (path === null) return sendJson(res, 400, { code: 'ESPRA_ERR_HTTP_BAD_PATH', message: 'malformed path, or a path that leaves the app build' })
  let build = current
  let file = current?.files.get(path)
  if (file === undefined && staged !== null) {
    file = staged.files.get(path)
    if (file !== undefined) build = staged
  }
  if (file === undefined) {
    return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: build === null ? 'no app build loaded yet' : `no file ${path} in build ${build.id}` })
  }
  const varies = file.gzip !== null || file.br !== null
  const ifNoneMatch = req.getHeader('if-none-match')
  const { variant, encoding } = negotiate(file, req.getHeader('accept-encoding'))
  const head = (status: number, etag: string) => {
    res.writeStatus(statusLine(status)).writeHeader('ETag', etag).writeHeader('Cache-Control', file.cacheControl)
      .writeHeader('X-Content-Type-Options', 'nosniff').writeHeader('Accept-Ranges', 'bytes')
    if (varies) res.writeHeader('Vary', 'Accept-Encoding')
    res.writeHeader('X-Espra-Build', build!.id)
  }
  if (ifNoneMatch !== '' && noneMatch(file, ifNoneMatch)) {
    head(304, variant.etag)
    res.endWithoutBody()
    return
  }
  // Ranges are of the representation sent (its own ETag); If-Range can only name that tag (no Last-Modified here).
  const rangeHeader = req.getHeader('range')
  const ifRange = req.getHeader('if-range')
  const size = variant.body.length
  const ranges = rangeHeader === '' || (ifRange !== '' && ifRange !== variant.etag) ? 'ignore' : parseRanges(rangeHeader, size)
  if (ranges === 'unsatisfiable') {
    head(416, variant.etag)
    res.writeHeader('Content-Range', `bytes */${size}`).writeHeader('Content-Type', 'application/json')
      .end(JSON.stringify(unsatisfiable(`${path} as sent`, size).toWire()))
    return
  }
  let body = variant.body
  let type = file.type
  if (ranges === 'ignore') head(200, variant.etag)
  else if (ranges.length === 1) {
    const [{ start, end }] = ranges as [{ start: number; end: number }]
    head(206, variant.etag)
    res.writeHeader('Content-Range', `bytes ${start}-${end}/${size}`)
    body = body.subarray(start, end + 1)
  } else {
    const layout = multipartLayout(ranges, size, file.type)
    head(206, variant.etag)
    body = multipartBody(layout, body)
    type = layout.contentType
  }
  res.writeHeader('Content-Type', type)
  if (encoding !== null) res.writeHeader('Content-Encoding', encoding)
  if (method === 'head') res.endWithoutBody(body.length)
  else res.end(body)
}

/** Adds the app routes to the child's app and follows the builds the seed pushes. */
export async function startAppAssets(ctx: ChildContext): Promise<Handle> {
  const { config, log } = ctx
  const store = await createBlobStore(blobStoreConfig(config))
  const appPath = config.appPath
  let current: LoadedBuild | null = null
  /** The build the seed asked to stage (loaded once `build` is set); it also answers paths `current` lacks. */
  let staged: { id: string; build: LoadedBuild | null } | null = null
  let loading: string | null = null
  let generation = 0
  // Settles once the first load ends (served or refused): the child listens only then (start-up readiness).
  let firstSettled!: () => void
  const firstLoad = new Promise<void>((resolve) => (firstSettled = resolve))

  const serve = (res: HttpResponse, req: HttpRequest) => answer(res, req, current, staged?.build ?? null, appPath, config.filesHost)
  ctx.app.any(appPath, serve)
  ctx.app.any(`${appPath}/*`, serve)

  function serving(build: LoadedBuild, started: number): void {
    current = build
    log.info({ build: build.id, files: build.files.size, private: build.private, bytes: build.bytes, ms: Math.round(performance.now() - started) }, 'app build serving')
    ctx.parent.send({ t: 'serving', id: build.id } satisfies AssetsToParent)
    firstSettled()
  }

  function apply(push: BuildPush): void {
    if (push.id === (loading ?? current?.id)) return
    const mine = ++generation
    loading = push.id
    const started = performance.now()
    loadBuild(store, push, current).then(
      (build) => {
        if (mine !== generation) return
        loading = null
        serving(build, started)
      },
      (err: unknown) => {
        if (mine !== generation) return
        loading = null
        const wire = toWire(err)
        log.error({ err, build: push.id }, 'app build cannot be loaded; still serving the previous one')
        ctx.parent.send({ t: 'load-failed', id: push.id, code: wire.code, message: wire.message } satisfies AssetsToParent)
        firstSettled()
      },
    )
  }

  // Two-phase deploys: a staged build is loaded whole beside the current one; activating it is one assignment.
  const follower: BuildFollower = {
    apply,
    async stage(push) {
      const mine = { id: push.id, build: null as LoadedBuild | null }
      staged = mine
      const build = await loadBuild(store, push, current)
      if (staged !== mine) throw createError('ESPRA_ERR_BUILD_REPLACED', { build: push.id, during: 'while it loaded' })
      mine.build = build
    },
    activate(id) {
      const build = staged?.id === id ? staged.build : null
      if (build === null) return false
      staged = null
      generation++
      loading = null
      serving(build, performance.now())
      return true
    },
    discard(id) {
      if (staged?.id === id) staged = null
    },
  }
  // A replacement child listens once the build its siblings serve is in memory, not before: a 404 for
  // an asset of the current build during a reload is a failed request (issue 11). A fresh cluster
  // (no build anywhere yet) starts at once.
  await waitForFirstBuild(ctx, await followBuild(ctx, follower), firstLoad)

  return {
    async close() {
      generation++
      await store.close()
    },
    destroy() {
      generation++
      void store.close()
    },
  }
}
