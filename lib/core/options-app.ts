/** App options (other roles ignore these): worker threads, request queue, timeouts, body size, app settings. */
import { availableParallelism } from 'node:os'
import { durationIn, integer, option, type OptionArea, parseSize } from './config-parsers.js'
import { InvalidValue } from './errors.js'

export const APP_OPTIONS = [
  option({
    key: 'threads', flag: '--threads <n>', env: 'ESPRA_THREADS', defaultText: 'CPU count',
    doc: 'app: worker threads per child that run the application (each takes one request at a time)',
    default: () => availableParallelism(), parse: integer(1, 256),
  }),
  option({
    key: 'queueSize', flag: '--queue-size <n>', env: 'ESPRA_QUEUE_SIZE', defaultText: '256',
    doc: 'app: requests a child queues while every worker is busy; past it, 503 with Retry-After',
    parse: integer(0, 1_000_000),
  }),
  option({
    key: 'requestTimeout', flag: '--request-timeout <duration>', env: 'ESPRA_REQUEST_TIMEOUT', defaultText: '30s',
    doc: 'app: a request unanswered after this gets 504 and the worker running it is terminated and replaced',
    parse: durationIn(10, 3_600_000),
  }),
  option({
    key: 'initTimeout', flag: '--init-timeout <duration>', env: 'ESPRA_INIT_TIMEOUT', defaultText: '30s',
    doc: 'app: a new build\'s workers must load and finish init() within this, else they are terminated and the build refused (ESPRA_ERR_BUILD_INIT_TIMEOUT); seed: staging waits this plus 15s for every node',
    details: 'app: a new build\'s workers must load it and finish `init()` within this, else they are terminated and the build is refused (`ESPRA_ERR_BUILD_INIT_TIMEOUT`); seed: a deploy\'s staging waits this plus 15s for every node ([docs/operations.md](operations.md), "Deploys")',
    parse: durationIn(100, 3_600_000),
  }),
  option({
    key: 'maxBody', flag: '--max-body <size>', env: 'ESPRA_MAX_BODY', defaultText: '1MB',
    doc: 'app: largest request body handed to the application (413 past it)',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n > 1024 ** 3) throw new InvalidValue('must be a size up to 1GB')
      return n
    },
  }),
  option({
    key: 'appSettings', flag: '--app-settings <json>', env: 'ESPRA_APP_SETTINGS', defaultText: '{}',
    doc: 'app: a JSON object handed to the application as ctx.config.settings (public URLs, feature switches); app code sees it, so no secrets',
    parse: parseAppSettings,
  }),
] as const

export const APP_AREA: OptionArea<typeof APP_OPTIONS> = { heading: 'App', options: APP_OPTIONS }

const MAX_APP_SETTINGS_BYTES = 64 * 1024

/** A JSON object (text from a flag or env; an object from a config file), at most 64 KB. */
function parseAppSettings(raw: unknown): Readonly<Record<string, unknown>> {
  let value = raw
  if (typeof raw === 'string') {
    if (raw.length > MAX_APP_SETTINGS_BYTES) throw new InvalidValue(`must be at most ${MAX_APP_SETTINGS_BYTES} bytes of JSON`)
    try {
      value = JSON.parse(raw)
    } catch (err) {
      throw new InvalidValue(`must be a JSON object (${(err as Error).message})`)
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidValue('must be a JSON object')
  if (JSON.stringify(value).length > MAX_APP_SETTINGS_BYTES) throw new InvalidValue(`must be at most ${MAX_APP_SETTINGS_BYTES} bytes of JSON`)
  return Object.freeze(value as Record<string, unknown>)
}
