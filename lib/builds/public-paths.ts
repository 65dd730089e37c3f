/**
 * Which files of an app build the fileservers serve (under `--app-path`).
 * A build holds both what browsers may fetch and what only the app role runs
 * (server code, its config): serving everything would publish the server's
 * source. So a build says what is public, in `espra.json` at its root:
 *
 * ```json
 * { "server": "server/main.js", "public": ["public/**", "favicon.ico"] }
 * ```
 *
 * Without a `public` field, `public/**` (everything under `public/`) is
 * public. Patterns are build paths with `*` (any characters but `/`), `?`
 * (one character but `/`) and `**` (a whole path segment: any number of
 * segments, none included); anything else is literal. The app role still
 * gets every file of the build; only the fileservers filter.
 */
import { createError, EspraError } from '../core/errors.js'
import { pathProblem } from './manifest.js'

/** The build file that says which paths are public (and, for the app role, where the server entry is). */
export const BUILD_DESCRIPTOR = 'espra.json'
export const DEFAULT_PUBLIC = ['public/**'] as const
const MAX_PATTERNS = 100

function invalid(message: string): EspraError {
  return createError('ESPRA_ERR_BUILD_INVALID', { field: 'espra.json', reason: message })
}

/** A pattern as a regular expression over a whole build path. */
export function globToRegExp(glob: string): RegExp {
  let out = ''
  const segments = glob.split('/')
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1
    if (segment === '**') {
      // Any number of whole segments: `a/**` matches a/x and a/x/y, `**/b` matches b and x/b.
      out += last ? '.*' : '(?:[^/]+/)*'
      return
    }
    out += segment.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]') + (last ? '' : '/')
  })
  return new RegExp(`^${out}$`)
}

/**
 * The `public` patterns of a build's `espra.json` (its text; null when the
 * build has none): the default when the field is absent. Throws
 * `ESPRA_ERR_BUILD_INVALID` when the file is not JSON or the field is not a
 * list of 1-100 patterns that are relative build paths.
 */
export function publicPatterns(descriptor: string | null): readonly string[] {
  if (descriptor === null) return DEFAULT_PUBLIC
  let parsed: unknown
  try {
    parsed = JSON.parse(descriptor)
  } catch (err) {
    throw invalid(`is not JSON: ${(err as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('must be a JSON object')
  const list = (parsed as Record<string, unknown>)['public']
  if (list === undefined) return DEFAULT_PUBLIC
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_PATTERNS) throw invalid(`"public" must be a list of 1 to ${MAX_PATTERNS} patterns`)
  for (const p of list) {
    const problem = pathProblem(p)
    if (problem !== null) throw invalid(`"public" pattern ${JSON.stringify(p)} ${problem}`)
  }
  return list as string[]
}

/** Whether a build path is public under `patterns`. */
export function createPublicFilter(patterns: readonly string[]): (path: string) => boolean {
  const res = patterns.map(globToRegExp)
  return (path) => res.some((re) => re.test(path))
}
