/**
 * A fileserver child's copy of the current app build: every file in memory,
 * with gzip and brotli variants of compressible types made once, at load
 * time, never per request. A build is loaded whole, then swapped in by one
 * reference (see app-assets.ts), so a request is answered entirely from one
 * build.
 *
 * Bytes come straight from the blob store (`--blob-store`), not over the meta
 * port: in production that is S3, which every node reaches; under `up` it is
 * the local directory every node of the machine shares. This keeps build
 * bytes off the seed's meta port (one seed, many children each loading the
 * whole build) and lets children load in parallel. A fileserver whose store
 * is a local directory the seed does not write to cannot load builds: it logs
 * `ESPRA_ERR_BUILD_LOAD`, keeps its build, and `push-build` names it.
 *
 * Only the build's public files are loaded, so only they can be served
 * (lib/builds/public-paths.ts: `public/**` unless `espra.json` lists more);
 * the server code stays with the app role.
 */
import { createHash } from 'node:crypto'
import { promisify } from 'node:util'
import { brotliCompress, constants, gzip } from 'node:zlib'
import { blobKeyOf, checkManifest, isCompressible, isContentHashedName, type BuildFile, type BuildPush } from '../../lib/builds/manifest.js'
import { readBlob } from '../../lib/builds/blob-read.js'
import { BUILD_DESCRIPTOR, createPublicFilter, publicPatterns } from '../../lib/builds/public-paths.js'
import { createError, EspraError } from '../../lib/core/errors.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'

const gzipAsync = promisify(gzip)
const brotliAsync = promisify(brotliCompress)
const PARALLEL_READS = 8
/** Below this, compression gains nothing worth a header. */
const MIN_COMPRESS_BYTES = 256

export const IMMUTABLE = 'public, max-age=31536000, immutable'
export const SHORT = 'public, max-age=60'

/** One representation: bytes plus the strong ETag that names exactly these bytes. */
export interface Variant {
  readonly body: Buffer
  readonly etag: string
}

export interface LoadedFile {
  readonly hash: string
  readonly type: string
  readonly cacheControl: string
  readonly identity: Variant
  readonly gzip: Variant | null
  readonly br: Variant | null
}

export interface LoadedBuild {
  readonly id: string
  /** The public files only, by build path. */
  readonly files: ReadonlyMap<string, LoadedFile>
  readonly bytes: number
  /** Files of the build that are not public (not loaded, never served). */
  readonly private: number
}

interface Content {
  identity: Variant
  gzip: Variant | null
  br: Variant | null
}

async function compress(hash: string, body: Buffer): Promise<Pick<Content, 'gzip' | 'br'>> {
  if (body.length < MIN_COMPRESS_BYTES) return { gzip: null, br: null }
  const [gz, br] = await Promise.all([
    gzipAsync(body, { level: 9 }),
    brotliAsync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: body.length > 4 * 1024 ** 2 ? 9 : 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }),
  ])
  // Different bytes, different strong ETags (RFC 9110 8.8.3); If-None-Match accepts any of a file's three.
  return {
    gzip: gz.length < body.length ? { body: gz, etag: `"${hash}-gz"` } : null,
    br: br.length < body.length ? { body: br, etag: `"${hash}-br"` } : null,
  }
}

/**
 * Loads a pushed build: reads every blob once per hash, checks its sha256,
 * precompresses. Content the previous build already holds is reused as is.
 * Throws `ESPRA_ERR_BUILD_LOAD` naming what was missing or corrupt.
 */
export async function loadBuild(store: BlobStore, push: BuildPush, previous: LoadedBuild | null): Promise<LoadedBuild> {
  const manifest = checkManifest(push.manifest)
  const isPublic = createPublicFilter(await buildPublicPatterns(store, push.id, manifest.files))
  const served = manifest.files.filter((f) => isPublic(f.path))
  const known = new Map<string, Content>()
  for (const f of previous?.files.values() ?? []) known.set(`${f.hash}\0${isCompressible(f.type)}`, f)
  const wanted = new Map<string, { hash: string; size: number; compressible: boolean }>()
  for (const f of served) {
    const id = `${f.hash}\0${isCompressible(f.type)}`
    if (!known.has(id)) wanted.set(id, { hash: f.hash, size: f.size, compressible: isCompressible(f.type) })
  }
  const todo = [...wanted.entries()]
  const bytesOf = new Map<string, Promise<Buffer>>()
  const read = (hash: string, size: number): Promise<Buffer> => {
    let p = bytesOf.get(hash)
    if (p === undefined) {
      p = readChecked(store, push.id, hash, size)
      bytesOf.set(hash, p)
    }
    return p
  }
  for (let i = 0; i < todo.length; i += PARALLEL_READS) {
    await Promise.all(todo.slice(i, i + PARALLEL_READS).map(async ([id, w]) => {
      const body = await read(w.hash, w.size)
      const identity = { body, etag: `"${w.hash}"` }
      known.set(id, { identity, ...(w.compressible ? await compress(w.hash, body) : { gzip: null, br: null }) })
    }))
  }
  const files = new Map<string, LoadedFile>()
  let bytes = 0
  for (const f of served) {
    const content = known.get(`${f.hash}\0${isCompressible(f.type)}`)!
    files.set(f.path, { hash: f.hash, type: f.type, cacheControl: isContentHashedName(f.path) ? IMMUTABLE : SHORT, ...content })
    bytes += f.size
  }
  return { id: push.id, files, bytes, private: manifest.files.length - served.length }
}

/** A build blob, its sha256 and size checked; `ESPRA_ERR_BUILD_LOAD` when missing or corrupt. */
async function readChecked(store: BlobStore, build: string, hash: string, size: number): Promise<Buffer> {
  const bytes = await readBlob(store, blobKeyOf(hash))
  if (bytes === null) throw createError('ESPRA_ERR_BUILD_LOAD', { build, hash, problem: 'not in the blob store' })
  const actual = createHash('sha256').update(bytes).digest('hex')
  if (actual !== hash || bytes.length !== size) throw createError('ESPRA_ERR_BUILD_LOAD', { build, hash, problem: `corrupt (hashes to ${actual})` })
  return bytes
}

/** The build's public patterns, from its `espra.json` when it has one (ESPRA_ERR_BUILD_INVALID when that is malformed). */
async function buildPublicPatterns(store: BlobStore, build: string, files: readonly BuildFile[]): Promise<readonly string[]> {
  const descriptor = files.find((f) => f.path === BUILD_DESCRIPTOR)
  if (descriptor === undefined) return publicPatterns(null)
  try {
    return publicPatterns((await readChecked(store, build, descriptor.hash, descriptor.size)).toString('utf8'))
  } catch (err) {
    if ((err as EspraError).code !== 'ESPRA_ERR_BUILD_INVALID') throw err
    // Free text: the espra.json checker's own message, with the build added.
    throw new EspraError('ESPRA_ERR_BUILD_INVALID', `build ${build}: ${(err as Error).message}`, { build, field: 'espra.json' })
  }
}
