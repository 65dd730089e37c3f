/** Fileserver options (other roles ignore these). */
import { constant, option, text } from './config-parsers.js'

export const FILESERVER_OPTIONS = [
  option({
    key: 'appPath', flag: '--app-path <path>', env: 'ESPRA_APP_PATH', defaultText: '/app',
    doc: 'fileserver: URL path the current app build is served under, e.g. /app (not /, not /_espra)',
    default: constant('/app'),
    parse: (raw: unknown): string => {
      const path = text(/^(\/[A-Za-z0-9._~-]+)+\/?$/, 'a path such as /app: "/"-separated segments of letters, digits, ".", "_", "~" and "-"')(raw).replace(/\/$/, '')
      if (path === '/_espra' || path.startsWith('/_espra/') || path.split('/').some((s) => s === '.' || s === '..')) throw 'must not be /_espra or hold "." or ".." segments'
      return path
    },
  }),
] as const
