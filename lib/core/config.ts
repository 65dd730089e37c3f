/**
 * The typed config tree. One table ({@link NODE_OPTIONS}) carries every option's
 * flag, environment variable, default, documentation and parser; the CLI,
 * `config defaults`, `config check` and the README are all driven from it.
 *
 * Precedence: defaults < config file < environment < flags. The result is
 * validated once, frozen, and handed to children in their first IPC message.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { availableParallelism, hostname, networkInterfaces } from 'node:os'
import { resolve } from 'node:path'
import { EspraError } from './errors.js'

export const ROLE_NAMES = ['seed', 'proxy', 'live', 'fileserver', 'app', 'mail', 'admin'] as const
export type RoleName = (typeof ROLE_NAMES)[number]

/** Each role has its own default public port so `up` runs every role on one host. */
export const DEFAULT_PORTS: Readonly<Record<RoleName, number>> = Object.freeze({
  seed: 7001,
  proxy: 8080,
  fileserver: 8081,
  app: 8082,
  live: 8083,
  mail: 8084,
  admin: 8085,
})

export const BLOB_STORES = ['local', 's3'] as const
export type BlobStoreKind = (typeof BLOB_STORES)[number]

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface NodeConfig {
  readonly role: RoleName
  readonly seed: readonly string[]
  readonly metaPort: number
  readonly port: number
  readonly bind: string
  readonly advertise: string
  readonly children: number
  readonly region: string
  /** proxy: serves `<region>.live.<liveDomain>`. */
  readonly liveDomain: string
  /** proxy: the routing-key handlers, tried in order (see {@link checkRouteKey}). */
  readonly routeKeys: readonly string[]
  readonly maxHeaderSize: number
  readonly maxConnsPerAddress: number
  readonly maxRpsPerAddress: number
  readonly nodeId: string
  readonly dataDir: string
  readonly secretFile: string
  readonly logLevel: LogLevel
  readonly drainTimeout: number
  readonly maxChildRss: number
  readonly metricsPort: number
  readonly metricsBind: string
  readonly heartbeatInterval: number
  readonly heartbeatTimeout: number
  readonly seedGrace: number
  readonly maxFrame: number
  /** Where files and builds are stored (`--blob-store`). */
  readonly blobStore: BlobStoreKind
  readonly blobDir: string
  /** Required when blobStore is s3. */
  readonly s3Bucket: string | null
  readonly s3Region: string
  /** An S3-compatible endpoint (path style); null for AWS. */
  readonly s3Endpoint: string | null
  readonly liveHistorySize: number
  readonly liveHistoryAge: number
  readonly livePollTimeout: number
  readonly liveMaxMessage: number
  readonly liveMaxBackpressure: number
  readonly livePublic: readonly string[]
  readonly liveLinkOffset: number
  /** The cluster secret, read from ESPRA_SECRET or the secret file. Never printed. */
  readonly secret: string
}

/** A value from a source before parsing: a flag/env string or a config-file JSON value. */
type Raw = unknown

export interface OptionSpec<K extends string = string> {
  readonly key: K
  /** Commander flag syntax, e.g. `--drain-timeout <duration>`. */
  readonly flag: string
  readonly env: string
  readonly doc: string
  /** Shown in help and `config defaults`; computed defaults get a description instead. */
  readonly defaultText: string
  readonly default: (partial: Record<string, unknown>) => unknown
  /** Returns the parsed value or throws a string saying what is allowed. */
  readonly parse: (raw: Raw) => unknown
}

// ---- parsers: each throws a short "what is allowed" sentence ----

function integer(min: number, max: number) {
  return (raw: Raw): number => {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN
    if (!Number.isInteger(n) || n < min || n > max) throw `must be an integer from ${min} to ${max}`
    return n
  }
}

const port = integer(1, 65535)

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Parses `250ms`, `10s`, `2m`, `1h` or a plain number of milliseconds. */
export function parseDuration(raw: Raw): number {
  if (typeof raw === 'number' && Number.isFinite(raw) && raw >= 0) return Math.round(raw)
  const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim()) : null
  if (!m) throw 'must be a duration such as 500ms, 10s, 2m or 1h'
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!)
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** Parses `64KB`, `512MB`, `1GB` or a plain number of bytes. */
export function parseSize(raw: Raw): number {
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) return raw
  const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(raw.trim()) : null
  if (!m) throw 'must be a size such as 65536, 64KB, 512MB or 1GB'
  return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!)
}

function durationIn(min: number, max: number) {
  return (raw: Raw): number => {
    const ms = parseDuration(raw)
    if (ms < min || ms > max) throw `must be a duration from ${min}ms to ${max}ms`
    return ms
  }
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: Raw): T => {
    if (typeof raw !== 'string' || !values.includes(raw as T)) throw `must be one of ${values.join(', ')}`
    return raw as T
  }
}

function text(pattern: RegExp, allowed: string) {
  return (raw: Raw): string => {
    if (typeof raw !== 'string' || !pattern.test(raw)) throw `must be ${allowed}`
    return raw
  }
}

const HOST = /^[A-Za-z0-9.:\-[\]]{1,253}$/
const host = text(HOST, 'a host name or IP address')

/** `host:port` with an IPv6 host in brackets. */
export function parseHostPort(raw: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim())
  const p = m ? Number(m[2]) : 0
  if (!m || p < 1 || p > 65535) throw `must be host:port (got '${raw}')`
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: p }
}

function seedList(raw: Raw): string[] {
  const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (!list || list.length === 0 || list.some((s) => typeof s !== 'string')) {
    throw 'must be a comma-separated list of host:port'
  }
  return list.map((s: string) => {
    const { host: h, port: p } = parseHostPort(s)
    return h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`
  })
}

function defaultAdvertise(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return '127.0.0.1'
}

/** Stable across restarts: the same host, role and port give the same id. */
export function defaultNodeId(role: string, port: number): string {
  const digest = createHash('sha256').update(`${hostname()}\0${role}\0${port}`).digest('hex')
  return `${role}-${digest.slice(0, 10)}`
}

function option<K extends string>(spec: OptionSpec<K>): OptionSpec<K> {
  return spec
}

const constant = (v: unknown) => () => v

export const ROUTE_KEY_FORMS = 'path:/prefix/, query:<name>, cookie:<name>, header:<name>, ip'

/** Validates one proxy routing-key handler (`--route-keys` item); throws a sentence saying what is allowed. */
export function checkRouteKey(item: string): string {
  if (item === 'ip') return item
  const m = /^(path|query|cookie|header):(.+)$/.exec(item)
  if (!m) throw `each item must be one of ${ROUTE_KEY_FORMS} (got '${item}')`
  const arg = m[2]!
  if (m[1] === 'path' && !/^\/([^/?#\s]+\/)*$/.test(arg)) throw `path:<prefix> must start and end with '/', e.g. path:/ch/ (got '${item}')`
  if (m[1] !== 'path' && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(arg)) throw `'${arg}' is not a valid ${m[1]} name`
  return item
}

export const NODE_OPTIONS = [
  option({
    key: 'role', flag: '--role <role>', env: 'ESPRA_ROLE', defaultText: '(required)',
    doc: `the role this node runs: ${ROLE_NAMES.join(', ')}`,
    default: constant(undefined), parse: oneOf(ROLE_NAMES),
  }),
  option({
    key: 'seed', flag: '--seed <list>', env: 'ESPRA_SEED', defaultText: '127.0.0.1:7000',
    doc: 'seed meta addresses, host:port[,host:port...]; the first reachable one is used, the rest are understudies',
    default: constant(['127.0.0.1:7000']), parse: seedList,
  }),
  option({
    key: 'metaPort', flag: '--meta-port <port>', env: 'ESPRA_META_PORT', defaultText: '7000',
    doc: 'the seed\'s internal meta port (seed role only; keep it off the public network)',
    default: constant(7000), parse: port,
  }),
  option({
    key: 'port', flag: '--port <port>', env: 'ESPRA_PORT',
    defaultText: Object.entries(DEFAULT_PORTS).map(([r, p]) => `${r} ${p}`).join(', '),
    doc: 'public HTTP port (health checks are served here)',
    default: (c) => DEFAULT_PORTS[c['role'] as RoleName] ?? 8080, parse: port,
  }),
  option({
    key: 'bind', flag: '--bind <address>', env: 'ESPRA_BIND', defaultText: '0.0.0.0',
    doc: 'address the public port binds to',
    default: constant('0.0.0.0'), parse: host,
  }),
  option({
    key: 'advertise', flag: '--advertise <address>', env: 'ESPRA_ADVERTISE', defaultText: 'first non-loopback IPv4',
    doc: 'address other nodes use to reach this one',
    default: defaultAdvertise, parse: host,
  }),
  option({
    key: 'children', flag: '--children <n>', env: 'ESPRA_CHILDREN', defaultText: 'CPU count',
    doc: 'child processes sharing the public port (the seed runs in its parent only)',
    default: () => availableParallelism(), parse: integer(1, 256),
  }),
  option({
    key: 'region', flag: '--region <name>', env: 'ESPRA_REGION', defaultText: 'us-1',
    doc: 'region this node serves; routing tables are per region',
    default: constant('us-1'), parse: text(/^[a-z0-9][a-z0-9-]{0,31}$/, 'lower-case letters, digits and dashes, at most 32'),
  }),
  // ---- proxy role (other roles ignore these) ----
  option({
    key: 'liveDomain', flag: '--live-domain <domain>', env: 'ESPRA_LIVE_DOMAIN', defaultText: 'localhost',
    doc: 'proxy: serves the live host <region>.live.<domain>; any other Host gets a quick 404',
    default: constant('localhost'), parse: (raw) => text(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,200}[A-Za-z0-9])?$/, 'a domain name')(raw).toLowerCase(),
  }),
  option({
    key: 'routeKeys', flag: '--route-keys <list>', env: 'ESPRA_ROUTE_KEYS', defaultText: 'cookie:espra_session,ip',
    doc: `proxy: where a request's routing key comes from, first match wins: ${ROUTE_KEY_FORMS}`,
    default: constant(['cookie:espra_session', 'ip']), parse: (raw) => {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
      if (!list || list.length === 0 || list.some((s) => typeof s !== 'string')) throw `must be a comma-separated list of ${ROUTE_KEY_FORMS}`
      return list.map((s: string) => checkRouteKey(s))
    },
  }),
  option({
    key: 'maxHeaderSize', flag: '--max-header-size <size>', env: 'ESPRA_MAX_HEADER_SIZE', defaultText: '16KB',
    doc: 'proxy: largest request head (request line and headers); a larger one gets 431',
    default: constant(16 * 1024), parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 1024 ** 2) throw 'must be a size from 1KB to 1MB'
      return n
    },
  }),
  option({
    key: 'maxConnsPerAddress', flag: '--max-conns-per-address <n>', env: 'ESPRA_MAX_CONNS_PER_ADDRESS', defaultText: '1000',
    doc: 'proxy: open connections one client address may hold per child process; more get 429 (0: no limit)',
    default: constant(1000), parse: integer(0, 10_000_000),
  }),
  option({
    key: 'maxRpsPerAddress', flag: '--max-rps-per-address <n>', env: 'ESPRA_MAX_RPS_PER_ADDRESS', defaultText: '0',
    doc: 'proxy: requests per second one client address may send per child process (burst of the same size); more get 429 (0: no limit)',
    default: constant(0), parse: integer(0, 10_000_000),
  }),
  option({
    key: 'nodeId', flag: '--node-id <id>', env: 'ESPRA_NODE_ID', defaultText: 'derived from host, role and port',
    doc: 'stable node identity in the registry',
    default: (c) => defaultNodeId(String(c['role']), Number(c['port'])),
    parse: text(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64'),
  }),
  option({
    key: 'dataDir', flag: '--data-dir <dir>', env: 'ESPRA_DATA_DIR', defaultText: './.espra',
    doc: 'state directory (secret, seed data, logs under `up`)',
    default: () => resolve('.espra'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a directory path')(raw)),
  }),
  option({
    key: 'secretFile', flag: '--secret-file <file>', env: 'ESPRA_SECRET_FILE', defaultText: '<data-dir>/secret',
    doc: 'file holding the cluster secret (ESPRA_SECRET overrides it)',
    default: (c) => resolve(String(c['dataDir']), 'secret'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'logLevel', flag: '--log-level <level>', env: 'ESPRA_LOG_LEVEL', defaultText: 'info',
    doc: `log level: ${LOG_LEVELS.join(', ')}`,
    default: constant('info'), parse: oneOf(LOG_LEVELS),
  }),
  option({
    key: 'drainTimeout', flag: '--drain-timeout <duration>', env: 'ESPRA_DRAIN_TIMEOUT', defaultText: '10s',
    doc: 'how long in-flight work may drain on stop or child replacement',
    default: constant(10_000), parse: durationIn(0, 3_600_000),
  }),
  option({
    key: 'maxChildRss', flag: '--max-child-rss <size>', env: 'ESPRA_MAX_CHILD_RSS', defaultText: '1GB',
    doc: 'a child whose RSS passes this is drained and replaced (0: never)',
    default: constant(1024 ** 3), parse: parseSize,
  }),
  option({
    key: 'metricsPort', flag: '--metrics-port <port>', env: 'ESPRA_METRICS_PORT', defaultText: 'public port + 1000',
    doc: 'Prometheus metrics port, served by the parent',
    default: (c) => Math.min(65535, Number(c['port']) + 1000), parse: port,
  }),
  option({
    key: 'metricsBind', flag: '--metrics-bind <address>', env: 'ESPRA_METRICS_BIND', defaultText: '127.0.0.1',
    doc: 'address the metrics port binds to (internal callers only)',
    default: constant('127.0.0.1'), parse: host,
  }),
  option({
    key: 'heartbeatInterval', flag: '--heartbeat-interval <duration>', env: 'ESPRA_HEARTBEAT_INTERVAL', defaultText: '1s',
    doc: 'how often a node heartbeats to the seed',
    default: constant(1000), parse: durationIn(50, 60_000),
  }),
  option({
    key: 'heartbeatTimeout', flag: '--heartbeat-timeout <duration>', env: 'ESPRA_HEARTBEAT_TIMEOUT', defaultText: '3s',
    doc: 'seed: a node silent this long is dead and removed',
    default: constant(3000), parse: durationIn(100, 600_000),
  }),
  option({
    key: 'seedGrace', flag: '--seed-grace <duration>', env: 'ESPRA_SEED_GRACE', defaultText: 'twice the heartbeat timeout',
    doc: 'seed: after start, how long nobody is evicted while nodes re-register',
    default: (c) => 2 * Number(c['heartbeatTimeout']), parse: durationIn(0, 600_000),
  }),
  option({
    key: 'maxFrame', flag: '--max-frame <size>', env: 'ESPRA_MAX_FRAME', defaultText: '1MB',
    doc: 'largest meta-port frame accepted; a larger one drops the peer',
    default: constant(1024 ** 2), parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 256 * 1024 ** 2) throw 'must be a size from 1KB to 256MB'
      return n
    },
  }),
  // ---- live role (other roles ignore these) ----
  option({
    key: 'liveHistorySize', flag: '--live-history-size <n>', env: 'ESPRA_LIVE_HISTORY_SIZE', defaultText: '1000',
    doc: 'live: messages of history kept per channel on its home node (0: none, so every reconnect is recovered:false)',
    default: constant(1000), parse: integer(0, 1_000_000),
  }),
  option({
    key: 'liveHistoryAge', flag: '--live-history-age <duration>', env: 'ESPRA_LIVE_HISTORY_AGE', defaultText: '5m',
    doc: 'live: history older than this is dropped',
    default: constant(300_000), parse: durationIn(1000, 7 * 24 * 3_600_000),
  }),
  option({
    key: 'livePollTimeout', flag: '--live-poll-timeout <duration>', env: 'ESPRA_LIVE_POLL_TIMEOUT', defaultText: '25s',
    doc: 'live: a long-poll with nothing to deliver answers empty after this',
    default: constant(25_000), parse: durationIn(100, 300_000),
  }),
  option({
    key: 'liveMaxMessage', flag: '--live-max-message <size>', env: 'ESPRA_LIVE_MAX_MESSAGE', defaultText: '64KB',
    doc: 'live: largest client frame or HTTP publish body (err 4004 / 413); a WebSocket frame 4KB past it drops the connection',
    default: constant(64 * 1024), parse: (raw) => {
      const n = parseSize(raw)
      if (n < 256 || n > 16 * 1024 ** 2) throw 'must be a size from 256 bytes to 16MB'
      return n
    },
  }),
  option({
    key: 'liveMaxBackpressure', flag: '--live-max-backpressure <size>', env: 'ESPRA_LIVE_MAX_BACKPRESSURE', defaultText: '1MB',
    doc: 'live: unsent bytes a client may fall behind by before it is dropped (it reconnects with since)',
    default: constant(1024 ** 2), parse: parseSize,
  }),
  option({
    key: 'livePublic', flag: '--live-public <patterns>', env: 'ESPRA_LIVE_PUBLIC', defaultText: '(none)',
    doc: 'live: channel patterns anyone may subscribe to without a token, e.g. news:*,status',
    default: constant([]), parse: (raw) => {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
      if (!list || list.some((p) => typeof p !== 'string' || !/^[A-Za-z0-9_\-:.@*]{1,128}$/.test(p))) throw 'must be a comma-separated list of channel patterns (letters, digits, _ - : . @ and *)'
      return list
    },
  }),
  option({
    key: 'liveLinkOffset', flag: '--live-link-offset <n>', env: 'ESPRA_LIVE_LINK_OFFSET', defaultText: '2000',
    doc: 'live: the internal link listens on the public port plus this; must be the same on every node of a region',
    default: constant(2000), parse: integer(1, 60_000),
  }),
  // ---- storage (nodes that store files and builds) ----
  option({
    key: 'blobStore', flag: '--blob-store <kind>', env: 'ESPRA_BLOB_STORE', defaultText: 'local',
    doc: `where files and builds are stored: ${BLOB_STORES.join(', ')} (s3 needs --s3-bucket)`,
    default: constant('local'), parse: oneOf(BLOB_STORES),
  }),
  option({
    key: 'blobDir', flag: '--blob-dir <dir>', env: 'ESPRA_BLOB_DIR', defaultText: '<data-dir>/blobs',
    doc: 'directory of the local blob store',
    default: (c) => resolve(String(c['dataDir']), 'blobs'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a directory path')(raw)),
  }),
  option({
    key: 's3Bucket', flag: '--s3-bucket <name>', env: 'ESPRA_S3_BUCKET', defaultText: '(none)',
    doc: 'bucket of the s3 blob store',
    default: constant(null),
    parse: text(/^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3 to 63 lower-case letters, digits, "." and "-"'),
  }),
  option({
    key: 's3Region', flag: '--s3-region <region>', env: 'ESPRA_S3_REGION', defaultText: 'us-east-1',
    doc: 'region of the S3 bucket',
    default: constant('us-east-1'), parse: text(/^[a-z0-9][a-z0-9-]{0,31}$/, 'a region name such as eu-west-1'),
  }),
  option({
    key: 's3Endpoint', flag: '--s3-endpoint <url>', env: 'ESPRA_S3_ENDPOINT', defaultText: '(AWS)',
    doc: 'an S3-compatible service instead of AWS, http(s)://host[:port], addressed path style',
    default: constant(null),
    parse: (raw) => text(/^https?:\/\/[^\s/?#@]+\/?$/, 'an http(s)://host[:port] URL')(raw).replace(/\/$/, ''),
  }),
] as const

export type ConfigKey = (typeof NODE_OPTIONS)[number]['key']

export interface ConfigSources {
  /** Values from the CLI, keyed by option key (commander's camelCase). */
  readonly flags: Record<string, unknown>
  readonly env: NodeJS.ProcessEnv
  /** Path of a JSON config file, if any (from `--config` or ESPRA_CONFIG). */
  readonly file?: string | undefined
}

function fail(option: string, reason: string): never {
  throw new EspraError('ESPRA_ERR_CONFIG_INVALID', `${option}: ${reason}`, { option })
}

function readConfigFile(file: string, known: ReadonlySet<string>): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    fail('--config', `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    fail('--config', `${file} is not valid JSON (${(err as Error).message})`)
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail('--config', `${file} must hold a JSON object`)
  for (const key of Object.keys(data)) {
    if (!known.has(key)) fail('--config', `${file}: unknown key '${key}' (known: ${[...known].join(', ')})`)
  }
  return data as Record<string, unknown>
}

/**
 * Resolves every option from its sources, in option order so computed
 * defaults can read earlier options, then checks the secret and freezes.
 */
export function loadConfig(sources: ConfigSources, options: readonly OptionSpec[] = NODE_OPTIONS): NodeConfig {
  const known = new Set(options.map((o) => o.key))
  const file = sources.file ?? sources.env['ESPRA_CONFIG']
  const fromFile = file ? readConfigFile(file, known) : {}
  const out: Record<string, unknown> = {}
  for (const o of options) {
    const [origin, raw] =
      sources.flags[o.key] !== undefined ? [o.flag.split(' ')[0]!, sources.flags[o.key]]
      : sources.env[o.env] !== undefined && sources.env[o.env] !== '' ? [o.env, sources.env[o.env]]
      : fromFile[o.key] !== undefined ? [`config file key '${o.key}'`, fromFile[o.key]]
      : [undefined, undefined]
    if (origin === undefined) {
      out[o.key] = o.default(out)
      continue
    }
    try {
      out[o.key] = o.parse(raw)
    } catch (reason) {
      if (typeof reason !== 'string') throw reason
      fail(origin, `${reason} (got ${JSON.stringify(raw)})`)
    }
  }
  if (out['role'] === undefined) fail('--role', `is required: one of ${ROLE_NAMES.join(', ')}`)
  if (out['blobStore'] === 's3' && out['s3Bucket'] === null) fail('--s3-bucket', 'is required when --blob-store is s3')
  out['secret'] = readSecret(sources.env, String(out['secretFile']))
  return Object.freeze(out) as unknown as NodeConfig
}

/** ESPRA_SECRET wins over the secret file; a secret shorter than 16 bytes is refused. */
export function readSecret(env: NodeJS.ProcessEnv, secretFile: string): string {
  let secret = env['ESPRA_SECRET']
  let origin = 'ESPRA_SECRET'
  if (!secret) {
    origin = '--secret-file'
    try {
      secret = readFileSync(secretFile, 'utf8').trim()
    } catch (err) {
      throw new EspraError(
        'ESPRA_ERR_SECRET_MISSING',
        `--secret-file: cannot read ${secretFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}); ` +
          'set ESPRA_SECRET or --secret-file (espra-node up creates one)',
        { option: '--secret-file' },
      )
    }
  }
  if (secret.length < 16) fail(origin, 'the cluster secret must be at least 16 characters')
  return secret
}

/** The config as `config check` prints it: everything but the secret. */
export function printable(config: NodeConfig): Record<string, unknown> {
  const { secret: _secret, ...rest } = config
  return rest
}
