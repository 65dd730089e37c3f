/**
 * App-build manifests: what `admin push-build` sends, the seed stores and
 * pushes, and fileservers load. A manifest lists every file of a build by
 * path, size, sha256 content hash and content type; the bytes live in the
 * blob store once per hash under `blobs/sha256/<hash>` (content addressing:
 * a file that did not change is never sent again).
 *
 * Manifests come from the network, so {@link manifestProblem} checks them
 * strictly, once, at every edge (CLI before sending, seed on every op,
 * fileserver before loading).
 */
import { createError, EspraError } from '../core/errors.js'
import type { CanaryPlan, CanaryState } from './canary.js'

export interface BuildFile {
  /** Relative, `/`-separated, no empty, `.` or `..` segments. */
  readonly path: string
  readonly size: number
  /** sha256 of the bytes, 64 lower-case hex digits. */
  readonly hash: string
  /** Content type served for it, e.g. `text/html; charset=utf-8`. */
  readonly type: string
}

export interface BuildManifest {
  readonly files: readonly BuildFile[]
}

/** A build as the seed pushes it (`{op: 'build', body}`). */
export interface BuildPush {
  readonly id: string
  readonly manifest: BuildManifest
}

/** A build's record in the datastore (`builds` kind) and in `build.list` answers. */
export interface BuildRecord {
  readonly id: string
  /** The build number: ids are `b<n>`, monotonic. */
  readonly n: number
  /** ms since the epoch. */
  readonly at: number
  readonly message: string
  readonly files: number
  readonly bytes: number
  /** Blob-store key of the manifest (JSON). */
  readonly manifestKey: string
  /**
   * How its last deploy (commit or rollback to it) ended: `staging` while
   * nodes load it, `live` once activated everywhere, `refused` (some node
   * refused it or did not answer), `replaced` (a newer push or rollback came
   * first), `canary` while it is current on the canary app nodes only,
   * `canary-failed` (the canaries did worse and were rolled back). Absent on
   * records written before two-phase deploys (they went live).
   */
  readonly state?: BuildState
  /** Each node's part in that deploy. */
  readonly stage?: readonly BuildStageNode[]
  /** A canary deploy's nodes, figures and verdict (lib/builds/canary.ts). */
  readonly canary?: CanaryState
  /**
   * When its last deploy started (ms since the epoch; the commit, or a
   * rollback to it) and whether that deploy has a canary. A leader that takes
   * over resumes the newest deploy left `staging` (or `canary`) only when both
   * are there (records written before resumable deploys lack them and stay abandoned),
   * with its canary only when the record also carries the plan (docs/postgres.md).
   */
  readonly stagingAt?: number
  readonly canaryPlanned?: boolean
  /** A canary deploy's plan, written by the commit: a leader that takes over resumes the canary with it. */
  readonly canaryPlan?: CanaryPlan
  /** The id `admin push-build` sent with its commit: after a failover it finds its build by it. */
  readonly pushId?: string
}

export type BuildState = 'staging' | 'live' | 'refused' | 'replaced' | 'canary' | 'canary-failed'

/** One node's answer to a staging round. */
export interface BuildStageNode {
  readonly node: string
  readonly role: string
  readonly state: 'staging' | 'staged' | 'refused'
  readonly code?: string
  readonly message?: string
}

export const MAX_FILES = 5000
export const MAX_FILE_BYTES = 64 * 1024 ** 2
export const MAX_BUILD_BYTES = 1024 ** 3
export const MAX_PATH_BYTES = 512
export const MAX_MESSAGE_CHARS = 500

const HASH = /^[0-9a-f]{64}$/
const BUILD_ID = /^b[1-9][0-9]{0,11}$/
const TYPE = /^[\x21-\x7e][\x20-\x7e]{0,127}$/
// No control characters (NUL included), no backslash (a Windows separator), no `%` (nothing to decode twice).
const PATH_CHARS = /^[^\x00-\x1f\x7f\\%]+$/

export const isHash = (v: unknown): v is string => typeof v === 'string' && HASH.test(v)
export const isBuildId = (v: unknown): v is string => typeof v === 'string' && BUILD_ID.test(v)

/** Recognises a build push from the seed (`{op: 'build', body}`); the manifest is checked when the build loads. */
export function isBuildPush(body: unknown): body is BuildPush {
  const b = body as Partial<BuildPush> | null
  return typeof b === 'object' && b !== null && isBuildId(b.id) && typeof b.manifest === 'object' && b.manifest !== null
}

/** Where a file's bytes live in the blob store. */
export const blobKeyOf = (hash: string): string => `blobs/sha256/${hash}`

/** Where a build's manifest lives in the blob store. */
export const manifestKeyOf = (id: string): string => `builds/${id}/manifest.json`

/** Null when `path` is a safe relative build path, else what is wrong. */
export function pathProblem(path: unknown): string | null {
  if (typeof path !== 'string' || path.length === 0) return 'must be a non-empty string'
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `must be at most ${MAX_PATH_BYTES} bytes`
  if (!PATH_CHARS.test(path)) return 'must not hold control characters, NUL, "\\" or "%"'
  if (path.startsWith('/')) return 'must be relative'
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') return 'must not have empty, "." or ".." segments'
  }
  return null
}

function invalid(field: string, allowed: string): EspraError {
  return createError('ESPRA_ERR_BUILD_INVALID', { field, reason: allowed })
}

/** Throws `ESPRA_ERR_BUILD_INVALID` (with `details.field`) unless `value` is a valid manifest; returns it typed. */
export function checkManifest(value: unknown): BuildManifest {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('manifest', 'must be a map')
  const files = (value as Record<string, unknown>)['files']
  if (!Array.isArray(files)) throw invalid('manifest.files', 'must be an array')
  if (files.length === 0) throw invalid('manifest.files', 'must list at least one file')
  if (files.length > MAX_FILES) throw invalid('manifest.files', `must list at most ${MAX_FILES} files`)
  const seen = new Set<string>()
  let total = 0
  files.forEach((f: unknown, i) => {
    const field = `manifest.files[${i}]`
    if (typeof f !== 'object' || f === null || Array.isArray(f)) throw invalid(field, 'must be a map')
    const { path, size, hash, type } = f as Record<string, unknown>
    const problem = pathProblem(path)
    if (problem) throw invalid(`${field}.path`, problem)
    if (seen.has(path as string)) throw invalid(`${field}.path`, `is listed twice (${JSON.stringify(path)})`)
    seen.add(path as string)
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_FILE_BYTES) throw invalid(`${field}.size`, `must be an integer from 0 to ${MAX_FILE_BYTES}`)
    if (!isHash(hash)) throw invalid(`${field}.hash`, 'must be a sha256 in lower-case hex')
    if (typeof type !== 'string' || !TYPE.test(type)) throw invalid(`${field}.type`, 'must be printable ASCII, at most 128 characters')
    total += size
  })
  if (total > MAX_BUILD_BYTES) throw invalid('manifest.files', `must add up to at most ${MAX_BUILD_BYTES} bytes`)
  // Keep only the known fields: nothing else travels on.
  return { files: files.map(({ path, size, hash, type }: BuildFile) => ({ path, size, hash, type })) }
}

/** Throws `ESPRA_ERR_BUILD_INVALID` unless `message` is printable text of at most 500 characters. */
export function checkMessage(message: unknown): string {
  if (message === undefined || message === null) return ''
  if (typeof message !== 'string' || message.length > MAX_MESSAGE_CHARS || /[\x00-\x08\x0b-\x1f\x7f]/.test(message)) {
    throw invalid('message', `must be text of at most ${MAX_MESSAGE_CHARS} characters without control characters`)
  }
  return message
}

/** Total bytes and distinct hashes of a manifest. */
export function manifestTotals(manifest: BuildManifest): { files: number; bytes: number; hashes: string[] } {
  const hashes = new Set<string>()
  let bytes = 0
  for (const f of manifest.files) {
    hashes.add(f.hash)
    bytes += f.size
  }
  return { files: manifest.files.length, bytes, hashes: [...hashes] }
}

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8', htm: 'text/html; charset=utf-8', css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8', mjs: 'text/javascript; charset=utf-8', json: 'application/json',
  map: 'application/json', txt: 'text/plain; charset=utf-8', md: 'text/markdown; charset=utf-8',
  xml: 'application/xml', svg: 'image/svg+xml', webmanifest: 'application/manifest+json', wasm: 'application/wasm',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', avif: 'image/avif',
  ico: 'image/x-icon', woff: 'font/woff', woff2: 'font/woff2', ttf: 'font/ttf', otf: 'font/otf', pdf: 'application/pdf',
  mp4: 'video/mp4', webm: 'video/webm', mp3: 'audio/mpeg', csv: 'text/csv; charset=utf-8',
}

/** The content type for a file name (by extension); `application/octet-stream` when unknown. */
export function contentTypeOf(path: string): string {
  const dot = path.lastIndexOf('.')
  return (dot > path.lastIndexOf('/') && TYPES[path.slice(dot + 1).toLowerCase()]) || 'application/octet-stream'
}

/** Types worth precompressing (text and text-like formats; images, fonts and media are compressed already). */
export function isCompressible(type: string): boolean {
  const base = type.split(';')[0]!.trim().toLowerCase()
  return base.startsWith('text/') || base.endsWith('+json') || base.endsWith('+xml') ||
    ['application/json', 'application/xml', 'application/javascript', 'application/wasm', 'image/svg+xml', 'font/ttf', 'font/otf', 'image/x-icon'].includes(base)
}

/** Content-hashed names (`name.<8+ hex>.ext`) never change meaning: they may be cached for a year. */
export function isContentHashedName(path: string): boolean {
  return /\.[0-9a-f]{8,}\.[A-Za-z0-9]+$/.test(path.slice(path.lastIndexOf('/') + 1))
}
