/**
 * An app child's copy of a build on disk: `import()` needs files, so every
 * file of the build is read from the blob store (sha256-checked, as the
 * fileserver does) and written under `<data-dir>/app-builds/<id>/`. The
 * directory is written beside its final name and renamed into place, so a
 * directory under that name is always whole; children of one node share it
 * (the first to finish wins the rename, the others reuse it).
 *
 * Builds are ES modules whatever surrounds the data directory: Node decides
 * how a `.js` file loads from the nearest `package.json` above it, and a
 * `{"type": "commonjs"}` one in a parent folder (what `npm init -y` writes)
 * would make every build's `export` a syntax error. So `app-builds/` holds
 * its own `package.json` saying `"type": "module"` (a build that ships its
 * own `package.json` still decides for itself).
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { blobKeyOf, checkManifest, type BuildPush } from '../../lib/builds/manifest.js'
import { readBlob } from '../../lib/builds/blob-read.js'
import { createError } from '../../lib/core/errors.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'

const PARALLEL_READS = 8
export const DEFAULT_ENTRY = 'server/index.js'
/** The file that makes every build under `app-builds/` load as ES modules; never pruned. */
export const MODULE_MARKER = 'package.json'
const MODULE_MARKER_TEXT = `${JSON.stringify({ type: 'module', private: true, description: 'written by espra-node: app builds load as ES modules' }, null, 2)}\n`

/** Writes `app-builds/package.json` unless it already says what it must (atomically: children write it at once). */
async function markModules(root: string): Promise<void> {
  const path = join(root, MODULE_MARKER)
  if ((await readFile(path, 'utf8').catch(() => '')) === MODULE_MARKER_TEXT) return
  const tmp = join(root, `.${MODULE_MARKER}.${process.pid}.tmp`)
  await writeFile(tmp, MODULE_MARKER_TEXT)
  await rename(tmp, path)
}

export interface BuildOnDisk {
  readonly id: string
  readonly dir: string
  /** Absolute path of the server entry module. */
  readonly entry: string
}

/** The entry named by `espra.json` (`{"server": "server/main.js"}`), or `server/index.js`. */
async function entryOf(dir: string, id: string): Promise<string> {
  let server = DEFAULT_ENTRY
  const descriptor = join(dir, 'espra.json')
  if (existsSync(descriptor)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(await readFile(descriptor, 'utf8'))
    } catch (err) {
      throw createError('ESPRA_ERR_APP_INIT', { build: id, reason: `espra.json is not JSON: ${(err as Error).message}` })
    }
    const named = (parsed as Record<string, unknown> | null)?.['server']
    if (named !== undefined) {
      if (typeof named !== 'string' || named === '' || named.startsWith('/') || named.split('/').some((s) => s === '..' || s === '.' || s === '')) {
        throw createError('ESPRA_ERR_APP_INIT', { build: id, reason: 'espra.json "server" must be a relative path inside the build' })
      }
      server = named
    }
  }
  const entry = join(dir, server)
  if (!existsSync(entry)) throw createError('ESPRA_ERR_APP_INIT', { build: id, reason: `no server entry ${server} in the build`, entry: server })
  return entry
}

/** Writes (or reuses) the build's directory; throws `ESPRA_ERR_BUILD_LOAD` or `ESPRA_ERR_APP_INIT`. */
export async function materializeBuild(store: BlobStore, push: BuildPush, dataDir: string): Promise<BuildOnDisk> {
  const root = join(dataDir, 'app-builds')
  const dir = join(root, push.id)
  await mkdir(root, { recursive: true })
  await markModules(root)
  if (!existsSync(dir)) {
    const manifest = checkManifest(push.manifest)
    const tmp = join(root, `.${push.id}.${process.pid}.${Date.now()}`)
    await mkdir(tmp, { recursive: true })
    try {
      const files = manifest.files
      for (let i = 0; i < files.length; i += PARALLEL_READS) {
        await Promise.all(files.slice(i, i + PARALLEL_READS).map(async (f) => {
          const bytes = await readBlob(store, blobKeyOf(f.hash))
          if (bytes === null) throw createError('ESPRA_ERR_BUILD_LOAD', { build: push.id, hash: f.hash, problem: 'not in the blob store' })
          const actual = createHash('sha256').update(bytes).digest('hex')
          if (actual !== f.hash) throw createError('ESPRA_ERR_BUILD_LOAD', { build: push.id, hash: f.hash, problem: `corrupt (hashes to ${actual})` })
          const path = join(tmp, f.path)
          await mkdir(dirname(path), { recursive: true })
          await writeFile(path, bytes)
        }))
      }
      await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
        // A sibling child renamed its copy first: use that one.
        if (!existsSync(dir)) throw err
        await rm(tmp, { recursive: true, force: true })
      })
    } catch (err) {
      await rm(tmp, { recursive: true, force: true })
      throw err
    }
  }
  return { id: push.id, dir, entry: await entryOf(dir, push.id) }
}
