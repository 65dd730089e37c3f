/**
 * Vhost files: a registered host name plus a request path name one stored
 * file (an upload's content-addressed record, `files/<sha256>`). The rules
 * for host names and paths, the datastore layout, and how a request's Host
 * and path are read; shared by the seed (the only writer of mappings), the
 * fileservers (which serve them) and the admin CLI (which checks arguments
 * before it connects).
 *
 * Datastore kind `vhosts`:
 * - `<host><path>` → {@link VhostMapping}, e.g. `www.example.com/docs/index.html`
 * - `host:<host>` → `{host, at}`: the host has at least one mapping, so it is a
 *   vhost. A host name holds no `:` and a path starts with `/`, so the two
 *   key forms never collide, and `<host>/` as a prefix lists exactly one
 *   host's mappings (`a.b/` is no prefix of `a.b.c/…`).
 */

/** DNS: at most 253 characters in all, labels of 1 to 63. */
export const MAX_HOST_LENGTH = 253
/** A mapping key (host + path) must fit the datastore's 512-byte keys. */
export const MAX_PATH_BYTES = 256
export const INDEX_FILE = 'index.html'
export const HOST_KEY_PREFIX = 'host:'

/** What a `<host><path>` key holds: enough to serve the file without reading its `files` record. */
export interface VhostMapping {
  readonly host: string
  readonly path: string
  /** The blob-store key of the file, `files/<sha256>` (what an upload answers as `key`). */
  readonly file: string
  readonly sha256: string
  /** Bytes of the file as uploaded (before any compression in the store). */
  readonly size: number
  readonly type: string
  /** How the store keeps it (`gzip` for compressible uploads), or null. */
  readonly encoding: string | null
  /** When the mapping was set (ms since the epoch). */
  readonly at: number
}

export const mappingKey = (host: string, path: string): string => `${host}${path}`
export const hostKey = (host: string): string => `${HOST_KEY_PREFIX}${host}`
/** The prefix of every mapping key of `host`. */
export const hostPrefix = (host: string): string => `${host}/`

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const SHA256 = /^[0-9a-f]{64}$/

/** Why `host` is not a vhost name (lower-case DNS name, no port, not an IP address), or null. */
export function hostProblem(host: unknown): string | null {
  if (typeof host !== 'string' || host === '') return 'must be a DNS name such as www.example.com'
  if (host.length > MAX_HOST_LENGTH) return `must be at most ${MAX_HOST_LENGTH} characters (got ${host.length})`
  if (/[:[\]]/.test(host)) return 'must be a name without a port (and not an IPv6 address)'
  for (const label of host.split('.')) {
    if (label === '') return 'must not have empty labels (".." or a leading or trailing ".")'
    if (/[A-Z]/.test(label)) return 'must be lower-case'
    if (!LABEL.test(label)) return `label ${JSON.stringify(label)} must be 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen`
  }
  if (/^\d+$/.test(host.slice(host.lastIndexOf('.') + 1))) return 'must be a host name, not an IP address (its last label is all digits)'
  return null
}

/** The canonical form of a host name an operator typed: lower-case, without a trailing dot. */
export function normalizeHost(host: string): string {
  const lower = host.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/** Why `path` cannot be mapped, ignoring its length (see {@link pathProblem}); null when it can. */
function pathShapeProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'must start with "/"'
  if (/[\x00-\x1f\x7f]/.test(path)) return 'must not hold NUL or other control characters'
  if (/[\\%?#]/.test(path)) return 'must not hold "\\", "%", "?" or "#" (give it decoded, without a query)'
  const segments = path.slice(1).split('/')
  for (const segment of segments.slice(0, -1)) {
    if (segment === '' || segment === '.' || segment === '..') return 'must not have empty, "." or ".." segments'
  }
  const last = segments[segments.length - 1]!
  if (last === '') return `must name a file, not end with "/" (a request for ${path} is served from ${path}${INDEX_FILE}: map that)`
  if (last === '.' || last === '..') return 'must not have empty, "." or ".." segments'
  return null
}

/**
 * Why `path` cannot be a mapping's path, or null: it starts with `/`, names
 * a file (no trailing `/`), has no empty, `.` or `..` segments, no control
 * characters, `\`, `%`, `?` or `#`, and is at most {@link MAX_PATH_BYTES}.
 */
export function pathProblem(path: unknown): string | null {
  if (typeof path !== 'string' || path === '') return 'must be a path such as /index.html'
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `must be at most ${MAX_PATH_BYTES} bytes`
  return pathShapeProblem(path)
}

/**
 * The host a request's `Host` header names, as vhosts are registered:
 * lower-case, port and trailing dot dropped. Null for an IPv6 literal or an
 * empty header (never a vhost).
 */
export function requestHost(header: string): string | null {
  if (header === '' || header.startsWith('[')) return null
  const colon = header.indexOf(':')
  let host = (colon < 0 ? header : header.slice(0, colon)).toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host === '' ? null : host
}

/**
 * The mapping path a request path asks for: percent-decoded once, a
 * trailing `/` meaning `index.html` under it. Null when it is malformed or
 * tries to leave its root in any form (`..`, `%2e%2e`, `//`, NUL, `\`, a `%`
 * left after decoding, which is how double encoding shows): answer 400.
 * A well-formed path longer than any mapping can be comes back as is (a 404).
 */
export function resolveRequestPath(url: string): string | null {
  if (!url.startsWith('/')) return null
  let decoded: string
  try {
    decoded = decodeURIComponent(url)
  } catch {
    return null
  }
  if (decoded.endsWith('/')) decoded += INDEX_FILE
  return pathShapeProblem(decoded) === null ? decoded : null
}

/** The sha256 a file argument names: the key an upload answers (`files/<sha256>`) or the bare hash. Null otherwise. */
export function fileSha256(file: unknown): string | null {
  if (typeof file !== 'string') return null
  const sha = file.startsWith('files/') ? file.slice('files/'.length) : file
  return SHA256.test(sha) ? sha : null
}

/** A value read back from the datastore is a mapping (guards what children are handed). */
export function isVhostMapping(v: unknown): v is VhostMapping {
  const m = v as Partial<VhostMapping> | null
  return typeof m === 'object' && m !== null && typeof m.host === 'string' && typeof m.path === 'string' &&
    typeof m.file === 'string' && typeof m.sha256 === 'string' && typeof m.size === 'number' && typeof m.type === 'string' &&
    (m.encoding === null || typeof m.encoding === 'string') && typeof m.at === 'number'
}
