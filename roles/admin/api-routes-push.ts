/**
 * Push-build over HTTP (docs/admin-api.md, "Push a build"), in three steps
 * that map onto the CLI's `build.plan`, `build.blob` and `build.commit`:
 *
 * 1. `POST /api/builds` with the manifest: checked with the CLI's rules,
 *    planned by the seed, recorded (roles/admin/api-push-store.ts); the
 *    answer names the contents the blob store lacks;
 * 2. `PUT /api/builds/uploads/:upload/files/:sha256` for each of those, the
 *    file's bytes as the body (roles/admin/api-push-upload.ts);
 * 3. `POST /api/builds/uploads/:upload/commit`: the seed commits and stages
 *    the build as for the CLI; 202 with the build to follow.
 */
import { parseCanaryOptions } from '../../lib/cli/admin/builds.js'
import { checkManifest, checkMessage, contentTypeOf, isHash, type BuildManifest } from '../../lib/builds/manifest.js'
import { createError, EspraError } from '../../lib/core/errors.js'
import type { MetaClient } from '../../lib/transport/meta-client.js'
import type { ApiDeps } from './api-deps.js'
import { asBadRequest, onlyFields, onlyQuery, optString, pathParam, type Body } from './api-fields.js'
import { askedHashes, askedSize, createPush, deletePush, movePush, newPushId, PUSH_ID, PUSH_TTL_MS, readManifest, readPush, type PushHeader } from './api-push-store.js'
import type { ApiRoute } from './api-router.js'

type Route = ApiRoute<ApiDeps>

const REQUEST_TIMEOUT_MS = 30_000
const HASH_FORMAT = /^[0-9a-f]{64}$/

const uploadId = (raw: string): string => pathParam(raw, 'upload', PUSH_ID, 'an upload id that POST /api/builds answered, such as up-mb2x4k1a-1f2e3d4c')
const noQuery = (q: URLSearchParams): void => onlyQuery(q, [])

/** The manifest as sent, a file's `type` filled from its name when left out (the CLI's table), then the CLI's checks. */
function manifestOf(raw: unknown): BuildManifest {
  if (typeof raw === 'object' && raw !== null && Array.isArray((raw as Record<string, unknown>)['files'])) {
    const files = ((raw as Record<string, unknown>)['files'] as unknown[]).map((f) => {
      if (typeof f !== 'object' || f === null || Array.isArray(f)) return f
      const file = f as Record<string, unknown>
      return file['type'] === undefined && typeof file['path'] === 'string' ? { ...file, type: contentTypeOf(file['path']) } : file
    })
    return checkManifest({ ...(raw as Record<string, unknown>), files })
  }
  return checkManifest(raw)
}

function pushRequest(body: Body) {
  onlyFields(body, ['manifest', 'message', 'canary', 'canaryTime'])
  if (body['manifest'] === undefined) throw createError('ESPRA_ERR_BUILD_INVALID', { field: 'manifest', reason: 'is required: {files: [{path, size, hash, type?}]}' })
  const manifest = manifestOf(body['manifest'])
  const message = checkMessage(body['message'])
  const canary = asBadRequest(() => parseCanaryOptions(optString(body, 'canary', 20), optString(body, 'canaryTime', 20)))
  return { manifest, message, canary }
}

/** Which of `sizes`' hashes the blob store lacks (`build.plan` over a manifest of just those), and the chunk size. */
async function stillMissing(client: MetaClient, sizes: ReadonlyMap<string, number>): Promise<{ missing: string[]; chunkSize: number }> {
  if (sizes.size === 0) return { missing: [], chunkSize: 0 }
  const files = [...sizes].map(([hash, size]) => ({ path: `blobs/${hash}`, size, hash, type: 'application/octet-stream' }))
  return client.request<{ missing: string[]; chunkSize: number }>('build.plan', { manifest: { files } }, REQUEST_TIMEOUT_MS)
}

const closed = (h: PushHeader): EspraError => h.state === 'committing'
  ? createError('ESPRA_ERR_ADMIN_PUSH_BUSY', { what: `build upload ${h.id}`, doing: 'committed', upload: h.id })
  : createError('ESPRA_ERR_ADMIN_PUSH_CLOSED', { upload: h.id, build: h.build ?? '(unknown)' })

export const PUSH_ROUTES: readonly Route[] = [
  {
    method: 'POST', path: '/api/builds', action: 'build.push', acts: true,
    check: (c) => {
      noQuery(c.query)
      const { manifest, message, canary } = pushRequest(c.body)
      const bytes = manifest.files.reduce((n, f) => n + f.size, 0)
      return { target: null, params: { files: manifest.files.length, bytes, message, ...(canary !== null ? { canary } : {}) } }
    },
    run: async (c, d) => {
      const { manifest, message, canary } = pushRequest(c.body)
      const plan = await d.link.client.request<{ missing: string[] }>('build.plan', { manifest }, REQUEST_TIMEOUT_MS)
      const sizes = new Map(manifest.files.map((f) => [f.hash, f.size]))
      const missing = new Map(plan.missing.filter(isHash).map((h) => [h, sizes.get(h) ?? 0]))
      const now = Date.now()
      const header: PushHeader = {
        id: newPushId(now), operator: c.operator.name, state: 'open', createdAt: now, expiresAt: now + PUSH_TTL_MS, message, canary,
        files: manifest.files.length, bytes: manifest.files.reduce((n, f) => n + f.size, 0), pages: 0,
        missing: missing.size, missingBytes: [...missing.values()].reduce((n, s) => n + s, 0), build: null,
      }
      await createPush(d.link.datastore, header, manifest, missing)
      const href = `/api/builds/uploads/${header.id}`
      return {
        status: 201,
        body: {
          upload: header.id, href, commit: `${href}/commit`, expiresAt: header.expiresAt, files: header.files, bytes: header.bytes,
          missing: [...missing].map(([hash, size]) => ({ hash, size, href: `${href}/files/${hash}` })), missingBytes: header.missingBytes,
        },
      }
    },
  },
  {
    method: 'GET', path: '/api/builds/uploads/:upload', action: 'build.upload.read', acts: false,
    check: (c) => (noQuery(c.query), { target: uploadId(c.params['upload']!), params: {} }),
    run: async (c, d) => {
      const header = await readPush(d.link.datastore, c.params['upload']!)
      const asked = header.state === 'committed' ? new Map<string, number>() : await askedHashes(d.link.datastore, header.id)
      const { missing } = await stillMissing(d.link.client, asked)
      return { status: 200, body: { ...header, remaining: missing.map((hash) => ({ hash, size: asked.get(hash) })) } }
    },
  },
  {
    method: 'PUT', path: '/api/builds/uploads/:upload/files/:sha256', action: 'build.upload', acts: true, rawBody: true,
    check: (c) => {
      noQuery(c.query)
      const hash = pathParam(c.params['sha256']!, 'sha256', HASH_FORMAT, 'a sha256 in lower-case hex (64 digits)')
      return { target: uploadId(c.params['upload']!), params: { hash } }
    },
    run: async (c, d) => {
      const body = c.raw!
      const id = c.params['upload']!
      const hash = c.params['sha256']!
      const header = await readPush(d.link.datastore, id)
      if (header.state !== 'open') throw closed(header)
      const size = await askedSize(d.link.datastore, id, hash)
      if (size === null) throw createError('ESPRA_ERR_ADMIN_PUSH_NOT_ASKED', { upload: id, hash })
      if (body.length !== null && body.length !== size) {
        throw createError('ESPRA_ERR_ADMIN_PUSH_SIZE', { reason: `${size} bytes for ${hash}; Content-Length says ${body.length}`, hash, expected: size, received: body.length })
      }
      const { missing, chunkSize } = await stillMissing(d.link.client, new Map([[hash, size]]))
      if (missing.length === 0) {
        body.drop()
        return { status: 200, body: { hash, size, stored: true, already: true } }
      }
      await d.uploads.upload(hash, size, chunkSize, body)
      return { status: 200, body: { hash, size, stored: true } }
    },
  },
  {
    method: 'POST', path: '/api/builds/uploads/:upload/commit', action: 'build.commit', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: uploadId(c.params['upload']!), params: {} }),
    run: async (c, d) => {
      const store = d.link.datastore
      const header = await readPush(store, c.params['upload']!)
      if (header.state !== 'open') throw closed(header)
      if (!(await movePush(store, header, 'committing'))) throw closed(await readPush(store, header.id))
      const committing: PushHeader = { ...header, state: 'committing' }
      let built: { id: string; files: number; bytes: number; staging: string[]; canary?: { nodes: string[]; timeMs: number } }
      try {
        const manifest = await readManifest(store, header)
        built = await d.link.client.request('build.commit', { manifest, message: header.message, ...(header.canary !== null ? { canary: header.canary } : {}) }, REQUEST_TIMEOUT_MS)
      } catch (err) {
        // Nothing was recorded: the upload stays open (upload what is missing, commit again).
        await movePush(store, committing, 'open').catch(() => {})
        throw err
      }
      await movePush(store, committing, 'committed', { build: built.id })
      await deletePush(store, header.id, true)
      return {
        status: 202,
        body: { id: built.id, upload: header.id, files: built.files, bytes: built.bytes, staging: built.staging, ...(built.canary ? { canary: built.canary } : {}), href: `/api/builds/${built.id}` },
      }
    },
  },
  {
    method: 'DELETE', path: '/api/builds/uploads/:upload', action: 'build.upload.abandon', acts: true,
    check: (c) => (noQuery(c.query), onlyFields(c.body, []), { target: uploadId(c.params['upload']!), params: {} }),
    run: async (c, d) => {
      const header = await readPush(d.link.datastore, c.params['upload']!)
      if (header.state === 'committing') throw closed(header)
      await deletePush(d.link.datastore, header.id)
      return { status: 200, body: { upload: header.id, removed: true } }
    },
  },
]
