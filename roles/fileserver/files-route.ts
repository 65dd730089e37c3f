/**
 * `GET|HEAD /f/<key>`: uploaded files (`files/<sha256>`, upload-store.ts)
 * from the blob store through the node's caches (cache-client.ts), answered
 * by object-answer.ts with `Cache-Control: public, max-age=2678400` (31 days:
 * a key names its bytes). With `--files-host` they are served on that Host
 * only.
 *
 * Every other key of the store (build manifests and blobs, tus parts)
 * answers 404 without a lookup. The key is the rest of the path,
 * percent-decoded once, and must be a valid storage key (blob-key.ts): `..`,
 * `.` and empty segments, a leading `/`, NUL and other control characters,
 * `\`, `%` (so double encoding) are all 400 before anything is looked up.
 * Cache files are named by the key's hash, so no path from a request ever
 * reaches the file system.
 */
import { sendJson } from '../../lib/http/server.js'
import { watchAbort } from '../../lib/http/stream-body.js'
import type { HttpRequest, HttpResponse } from '../../lib/http/uws.js'
import type { ChildContext } from '../../lib/process/role.js'
import { checkKey } from '../../lib/storage/blob-key.js'
import { requestHost } from '../../lib/vhosts/vhost.js'
import type { FileServing } from './cache-client.js'
import { methodNotAllowed, readAsk, type ServeOptions } from './object-answer.js'

const FILES_PATH = '/f'
const FILES_OPTIONS: ServeOptions = { cacheControl: 'public, max-age=2678400', upload: true }

/** The keys `/f/` serves: uploaded files (upload-store.ts), nothing else of the blob store. */
const UPLOAD_KEY = /^files\/[0-9a-f]{64}$/

/** The storage key a `/f/...` URL names, or null when it is malformed or tries to leave the store. */
function resolveFileKey(url: string): string | null {
  const rest = url.slice(FILES_PATH.length + 1)
  let key: string
  try {
    key = decodeURIComponent(rest)
    checkKey(key)
  } catch {
    return null
  }
  return key
}

/** Adds `GET|HEAD /f/*` to the child's app, served by `files`: uploaded files only, on `--files-host` when set. */
export function startFilesRoute(ctx: ChildContext, files: FileServing): void {
  const filesHost = ctx.config.filesHost
  ctx.app.any(`${FILES_PATH}/*`, (res: HttpResponse, req: HttpRequest): Promise<void> | void => {
    if (filesHost !== null && requestHost(req.getHeader('host')) !== filesHost) {
      return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `uploaded files are served on ${filesHost} only` })
    }
    const method = req.getMethod().toLowerCase()
    if (method !== 'get' && method !== 'head') return methodNotAllowed(res, method, 'files')
    const key = resolveFileKey(req.getUrl())
    if (key === null) return sendJson(res, 400, { code: 'ESPRA_ERR_HTTP_BAD_PATH', message: 'malformed file path, or one that leaves the file store' })
    // Build manifests and blobs, tus parts and anything else in the store are not files: nothing is looked up.
    if (!UPLOAD_KEY.test(key)) return sendJson(res, 404, { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file ${key} (only uploaded files, files/<sha256>, are served here)` })
    // Everything from the request is read now: after the first await the request object is gone.
    const ask = readAsk(req, method, key)
    return files.serve(res, ask, watchAbort(res), FILES_OPTIONS)
  })
}
