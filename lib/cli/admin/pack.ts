/**
 * Packs a directory for `admin push-build`: a manifest of every regular file
 * under it (relative `/` paths, sizes, sha256 content hashes, content types),
 * checked with the same rules the seed applies. Symbolic links and other
 * non-regular entries are skipped and named, so nothing outside the
 * directory is read.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { checkManifest, contentTypeOf, type BuildFile, type BuildManifest } from '../../builds/manifest.js'
import { BUILD_DESCRIPTOR, publicPatterns } from '../../builds/public-paths.js'
import { createError } from '../../core/errors.js'

export interface PackedBuild {
  readonly manifest: BuildManifest
  /** Absolute path on disk of each content hash (the first file that has it). */
  readonly sources: ReadonlyMap<string, string>
  readonly skipped: readonly string[]
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export async function packDirectory(dir: string): Promise<PackedBuild> {
  let top
  try {
    top = await lstat(dir)
  } catch (err) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '<dir>', reason: `cannot read ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
  }
  if (!top.isDirectory()) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '<dir>', reason: `${dir} is not a directory` })
  const files: BuildFile[] = []
  const sources = new Map<string, string>()
  const skipped: string[] = []
  const walk = async (at: string): Promise<void> => {
    const entries = await readdir(at, { withFileTypes: true })
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const e of entries) {
      const full = join(at, e.name)
      const rel = relative(dir, full).split(sep).join('/')
      if (e.isDirectory()) await walk(full)
      else if (e.isFile()) {
        const [hash, info] = await Promise.all([hashFile(full), lstat(full)])
        files.push({ path: rel, size: info.size, hash, type: contentTypeOf(rel) })
        if (!sources.has(hash)) sources.set(hash, full)
      } else skipped.push(rel)
    }
  }
  await walk(dir)
  // A malformed "public" list is refused here, before anything is sent, as the fileservers would refuse the build.
  if (files.some((f) => f.path === BUILD_DESCRIPTOR)) publicPatterns(await readFile(join(dir, BUILD_DESCRIPTOR), 'utf8'))
  return { manifest: checkManifest({ files }), sources, skipped }
}
