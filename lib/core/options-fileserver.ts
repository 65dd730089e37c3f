/** Fileserver options (other roles ignore these). */
import { resolve } from 'node:path'
import { constant, durationIn, option, type OptionArea, parseSize, text } from './config-parsers.js'
import { InvalidValue } from './errors.js'

export const FILESERVER_OPTIONS = [
  option({
    key: 'appPath', flag: '--app-path <path>', env: 'ESPRA_APP_PATH', defaultText: '/app',
    doc: 'fileserver: URL path the current app build is served under, e.g. /app (not /, /_espra, /f, /upload or /uploads)',
    parse: (raw: unknown): string => {
      const path = text(/^(\/[A-Za-z0-9._~-]+)+\/?$/, 'a path such as /app: "/"-separated segments of letters, digits, ".", "_", "~" and "-"')(raw).replace(/\/$/, '')
      if (path === '/_espra' || path.startsWith('/_espra/') || path.split('/').some((s) => s === '.' || s === '..')) throw new InvalidValue('must not be /_espra or hold "." or ".." segments')
      // Blob-store files are served under /f/ (roles/fileserver/files-route.ts).
      if (path === '/f' || path.startsWith('/f/')) throw new InvalidValue('must not be /f or under it (blob-store files are served there)')
      // Uploads are taken at /upload (roles/fileserver/upload.ts) and /uploads/ (tus, roles/fileserver/tus.ts).
      if (path === '/upload' || path === '/uploads' || path.startsWith('/uploads/')) throw new InvalidValue('must not be /upload, /uploads or under /uploads (uploads are taken there)')
      return path
    },
  }),
  option({
    key: 'filesHost', flag: '--files-host <host>', env: 'ESPRA_FILES_HOST', defaultText: '(none: any Host)',
    doc: 'fileserver: the host uploaded files (/f/) are served on, e.g. files.example.com: /f/ answers 404 on any other Host and the app build (--app-path) 404 on this one, so uploads never share an origin with the app\'s pages',
    details: "fileserver: the host uploaded files (`/f/`) are served on, e.g. `files.example.com`: `/f/` answers 404 on any other Host and the app build (`--app-path`) 404 on this one, so uploads never share an origin with the app's pages (`up` uses `files.localhost`)",
    default: constant(null),
    parse: (raw: unknown): string => {
      // A DNS name (as vhost names, lib/vhosts/vhost.ts): labels of 1-63 letters, digits and inner hyphens; no port, no IP address.
      const host = text(/^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$/, 'a host name such as files.example.com (no port, no scheme)')(raw)
      if (/^[0-9.]+$/.test(host)) throw new InvalidValue('must be a host name, not an IP address (a browser origin of its own needs a name)')
      return host.toLowerCase().replace(/\.$/, '')
    },
  }),
  option({
    key: 'cacheDir', flag: '--cache-dir <dir>', env: 'ESPRA_CACHE_DIR', defaultText: '<data-dir>/cache',
    doc: 'fileserver: disk cache of blob-store objects served under /f/ (one per node, shared by its children; kept across restarts)',
    default: (c) => resolve(String(c['dataDir']), 'cache'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a directory path')(raw)),
  }),
  option({
    key: 'cacheMaxBytes', flag: '--cache-max-bytes <size>', env: 'ESPRA_CACHE_MAX_BYTES', defaultText: '1GB',
    doc: 'fileserver: the disk cache is kept under this many bytes, least recently served objects evicted first',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024) throw new InvalidValue('must be a size of at least 1KB')
      return n
    },
  }),
  option({
    key: 'uploadExpiry', flag: '--upload-expiry <duration>', env: 'ESPRA_UPLOAD_EXPIRY', defaultText: '24h',
    doc: 'fileserver: a resumable (tus) upload not finished this long after its creation expires: 410, then its parts and state are swept',
    details: 'fileserver: a resumable (tus) upload not finished this long after its creation expires (410), then its state and parts are swept; 1s to 30 days',
    parse: durationIn(1000, 30 * 24 * 3_600_000),
  }),
] as const

export const FILESERVER_AREA: OptionArea<typeof FILESERVER_OPTIONS> = { heading: 'Fileserver', options: FILESERVER_OPTIONS }
