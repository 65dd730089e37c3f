/**
 * The typed config tree. One table ({@link NODE_OPTIONS}) carries every option's
 * flag, environment variable, default, documentation and parser; the CLI,
 * `config defaults`, `config check` and docs/configuration.md (lib/core/options-doc.ts)
 * are all driven from it, area by area ({@link OPTION_AREAS}).
 *
 * Precedence: defaults < config file < environment < flags. The result is
 * validated once, frozen, and handed to children in their first IPC message.
 */
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { availableParallelism, hostname, networkInterfaces } from 'node:os'
import { resolve } from 'node:path'
import { durationIn, fileInTheWay, flag, host, integer, oneOf, option, type OptionArea, type OptionSpec, type OptionValue, parseSize, port, seedList, text } from './config-parsers.js'
import { createError, EspraError, InvalidValue } from './errors.js'
import { ALERT_AREA, checkAlerts } from './options-alerts.js'
import { ADMIN_AREA, loadAdminOperators, type AdminOperator } from './options-admin.js'
import { APP_AREA } from './options-app.js'
import { ELB_AREA } from './options-elb.js'
import { FILESERVER_AREA } from './options-fileserver.js'
import { LIVE_AREA } from './options-live.js'
import { checkMailTls, MAIL_AREA } from './options-mail.js'
import { checkMailInbound, MAIL_INBOUND_AREA } from './options-mail-inbound.js'
import { checkMailOut, MAIL_OUT_AREA } from './options-mail-out.js'
import { checkProxyTls, PROXY_AREA } from './options-proxy.js'
import { STORAGE_AREA } from './options-storage.js'
import { TASK_AREA } from './options-tasks.js'
import { DATASTORE_AREA, isPostgres, maskPostgresUrl } from './options-datastore.js'

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

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

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

const COMMON_OPTIONS = [
  option({
    key: 'role', flag: '--role <role>', env: 'ESPRA_ROLE', defaultText: '(required)',
    doc: `the role this node runs: ${ROLE_NAMES.join(', ')}`,
    default: () => fail('--role', `is required: one of ${ROLE_NAMES.join(', ')}`), parse: oneOf(ROLE_NAMES),
  }),
  option({
    key: 'seed', flag: '--seed <list>', env: 'ESPRA_SEED', defaultText: '127.0.0.1:7000',
    doc: 'seed meta addresses, host:port[,host:port...]; the first reachable one is used, the rest are understudies (seeds on one PostgreSQL datastore: list them all; a follower sends nodes on to the leader)',
    details: 'seed meta addresses, host:port[,host:port...]; the first reachable one is used, the rest are understudies. With seeds on one PostgreSQL datastore a node may list them all in any order: a seed that does not lead sends it on to the one that does ([postgres.md](postgres.md), "Several seeds")',
    parse: seedList,
  }),
  option({
    key: 'metaPort', flag: '--meta-port <port>', env: 'ESPRA_META_PORT', defaultText: '7000',
    doc: 'the seed\'s internal meta port (seed role only; keep it off the public network)',
    parse: port,
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
    parse: host,
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
    parse: text(/^[a-z0-9][a-z0-9-]{0,31}$/, 'lower-case letters, digits and dashes, at most 32'),
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
    details: 'state directory (secret, seed data, logs under `up`); a path at or under a regular file exits 2 naming the option',
    parse: (raw) => resolve(text(/^.{1,4096}$/, 'a directory path')(raw)),
  }),
  option({
    key: 'secretFile', flag: '--secret-file <file>', env: 'ESPRA_SECRET_FILE', defaultText: '<data-dir>/secret',
    doc: 'file holding the cluster secret (ESPRA_SECRET overrides it)',
    details: 'file holding the cluster secret (ESPRA_SECRET overrides it); a file that group or other users may read or write is refused (exit 2, `ESPRA_ERR_SECRET_INSECURE`, with the `chmod 600` to run), as ssh refuses such keys; `admin` commands refuse it too',
    default: (c) => resolve(String(c['dataDir']), 'secret'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'insecureSecretFile', flag: '--insecure-secret-file [bool]', env: 'ESPRA_INSECURE_SECRET_FILE', defaultText: 'false',
    doc: 'accept a secret file that group or other users may read or write (refused otherwise, as ssh refuses such keys)',
    details: 'accept a secret file that group or other users may read or write (refused otherwise, as ssh refuses such keys); also honoured by `admin` commands through the environment variable',
    parse: flag,
  }),
  option({
    key: 'logLevel', flag: '--log-level <level>', env: 'ESPRA_LOG_LEVEL', defaultText: 'info',
    doc: `log level: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  }),
  option({
    key: 'drainTimeout', flag: '--drain-timeout <duration>', env: 'ESPRA_DRAIN_TIMEOUT', defaultText: '10s',
    doc: 'how long in-flight work may drain on stop or child replacement',
    parse: durationIn(0, 3_600_000),
  }),
  option({
    key: 'maxChildRss', flag: '--max-child-rss <size>', env: 'ESPRA_MAX_CHILD_RSS', defaultText: '1GB',
    doc: 'a child whose RSS passes this is drained and replaced (0: never)',
    parse: parseSize,
  }),
  option({
    key: 'metricsPort', flag: '--metrics-port <port>', env: 'ESPRA_METRICS_PORT', defaultText: 'public port + 1000',
    doc: 'Prometheus metrics port, served by the parent',
    default: (c) => Math.min(65535, Number(c['port']) + 1000), parse: port,
  }),
  option({
    key: 'metricsBind', flag: '--metrics-bind <address>', env: 'ESPRA_METRICS_BIND', defaultText: '127.0.0.1',
    doc: 'address the metrics port binds to (internal callers only)',
    parse: host,
  }),
  option({
    key: 'heartbeatInterval', flag: '--heartbeat-interval <duration>', env: 'ESPRA_HEARTBEAT_INTERVAL', defaultText: '1s',
    doc: 'how often a node heartbeats to the seed',
    parse: durationIn(50, 60_000),
  }),
  option({
    key: 'heartbeatTimeout', flag: '--heartbeat-timeout <duration>', env: 'ESPRA_HEARTBEAT_TIMEOUT', defaultText: '3s',
    doc: 'seed: a node silent this long is dead and removed',
    details: 'seed: a node silent this long is dead and removed; must be at least twice `--heartbeat-interval` (exit 2 otherwise: one late heartbeat would evict a live node)',
    parse: durationIn(100, 600_000),
  }),
  option({
    key: 'seedGrace', flag: '--seed-grace <duration>', env: 'ESPRA_SEED_GRACE', defaultText: 'twice the heartbeat timeout',
    doc: 'seed: after start, how long nobody is evicted while nodes re-register',
    default: (c) => 2 * Number(c['heartbeatTimeout']), parse: durationIn(0, 600_000),
  }),
  option({
    key: 'maxFrame', flag: '--max-frame <size>', env: 'ESPRA_MAX_FRAME', defaultText: '1MB',
    doc: 'largest meta-port frame accepted; a larger one drops the peer',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 256 * 1024 ** 2) throw new InvalidValue('must be a size from 1KB to 256MB')
      return n
    },
  }),
] as const

const COMMON_AREA: OptionArea<typeof COMMON_OPTIONS> = { heading: 'Every node', options: COMMON_OPTIONS }

/** The option table by area, in the order of `--help` and docs/configuration.md. */
export const OPTION_AREAS = [COMMON_AREA, PROXY_AREA, LIVE_AREA, STORAGE_AREA, DATASTORE_AREA, FILESERVER_AREA, APP_AREA, TASK_AREA, ELB_AREA, MAIL_AREA, MAIL_INBOUND_AREA, MAIL_OUT_AREA, ALERT_AREA, ADMIN_AREA] as const

/** One row of the option table, typed by its key and value. */
type NodeOption = (typeof OPTION_AREAS)[number]['options'][number]

/** Every option, common ones first: computed defaults may read only earlier options. */
export const NODE_OPTIONS: readonly NodeOption[] = OPTION_AREAS.flatMap((area): readonly NodeOption[] => area.options)

export type ConfigKey = NodeOption['key']

/**
 * The config a node runs with, derived from the table: one field per option,
 * typed by what its parser (or its default) gives; plus what the loader reads
 * from files (the secret, the admin operators).
 */
export type NodeConfig = { readonly [O in NodeOption as O['key']]: OptionValue<O> } & {
  /** The cluster secret, read from ESPRA_SECRET or the secret file. Never printed. */
  readonly secret: string
  /** admin: the operators read from `adminTokensFile` at load (empty without one). */
  readonly adminOperators: readonly AdminOperator[]
}

export interface ConfigSources {
  /** Values from the CLI, keyed by option key (commander's camelCase). */
  readonly flags: Record<string, unknown>
  readonly env: NodeJS.ProcessEnv
  /** Path of a JSON config file, if any (from `--config` or ESPRA_CONFIG). */
  readonly file?: string | undefined
}

function fail(option: string, reason: string): never {
  throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason })
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
      if (!(reason instanceof InvalidValue)) throw reason
      fail(origin, `${reason.message} (got ${JSON.stringify(raw)})`)
    }
  }
  if (out['blobStore'] === 's3' && out['s3Bucket'] === null) fail('--s3-bucket', 'is required when --blob-store is s3')
  checkTimings(out)
  checkProxyTls(out)
  checkMailTls(out)
  checkMailInbound(out)
  checkMailOut(out)
  checkTasks(out)
  checkAlerts(out)
  const blocker = fileInTheWay(String(out['dataDir']))
  if (blocker !== null) fail('--data-dir', `cannot use ${String(out['dataDir'])}: ${blocker} is a file, not a directory`)
  out['secret'] = readSecret(sources.env, String(out['secretFile']), { insecure: out['insecureSecretFile'] === true })
  // Only the admin role serves the API; other roles never read the file (a shared config may name it).
  if (out['role'] === 'admin') loadAdminOperators(out)
  else out['adminOperators'] = Object.freeze([])
  return Object.freeze(out) as unknown as NodeConfig
}

/**
 * A seed evicts a node silent for `--heartbeat-timeout`: under two
 * heartbeat intervals, one late heartbeat (or one lost) evicts a live node.
 */
function checkTimings(out: Record<string, unknown>): void {
  const interval = Number(out['heartbeatInterval'])
  const timeout = Number(out['heartbeatTimeout'])
  if (timeout < 2 * interval) {
    fail('--heartbeat-timeout', `must be at least twice --heartbeat-interval (${interval}ms), so one late heartbeat does not evict a live node (got ${timeout}ms)`)
  }
}

/** Group or other permission bits on the secret file: readable (or replaceable) by someone else. */
const INSECURE_BITS = 0o077

/**
 * ESPRA_SECRET wins over the secret file; a secret shorter than 16 bytes is
 * refused, and so is a secret file other users may read or write unless
 * `insecure` (`--insecure-secret-file`, ESPRA_INSECURE_SECRET_FILE).
 */
export function readSecret(env: NodeJS.ProcessEnv, secretFile: string, opts: { insecure?: boolean } = {}): string {
  let secret = env['ESPRA_SECRET']
  let origin = 'ESPRA_SECRET'
  if (!secret) {
    origin = '--secret-file'
    try {
      const mode = statSync(secretFile).mode
      if ((mode & INSECURE_BITS) !== 0 && !opts.insecure) {
        throw createError('ESPRA_ERR_SECRET_INSECURE', {
          option: '--secret-file', file: secretFile, mode: (mode & 0o777).toString(8).padStart(4, '0'),
          fix: `chmod 600 ${secretFile} (or pass --insecure-secret-file)`,
        })
      }
      secret = readFileSync(secretFile, 'utf8').trim()
    } catch (err) {
      if ((err as EspraError).code === 'ESPRA_ERR_SECRET_INSECURE') throw err
      throw createError('ESPRA_ERR_SECRET_MISSING', { option: '--secret-file', file: secretFile, reason: (err as NodeJS.ErrnoException).code ?? 'error' })
    }
  }
  if (secret.length < 16) fail(origin, 'the cluster secret must be at least 16 characters')
  return secret
}

/** `--tasks postgres` keeps its queues in the datastore's database: it needs one. */
function checkTasks(out: Record<string, unknown>): void {
  if (out['tasks'] === 'postgres' && !isPostgres(String(out['datastore']))) fail('--tasks', 'postgres needs --datastore postgres://… (the queue lives in that database)')
}

/** The config as `config check` prints it: everything but the secret. */
export function printable(config: NodeConfig): Record<string, unknown> {
  const { secret: _secret, adminOperators, ...rest } = config
  // A Redis URL and an SMTP relay URL may carry a password.
  const masked = (raw: string): string => {
    const url = new URL(raw)
    if (url.password !== '') url.password = '***'
    return url.toString()
  }
  return {
    ...rest,
    // Token hashes are not secrets, but nobody needs them printed: names and roles say who may call the API.
    adminOperators: (adminOperators ?? []).map(({ name, role }) => ({ name, role })),
    ...(rest.redis !== null ? { redis: masked(rest.redis) } : {}),
    datastore: maskPostgresUrl(rest.datastore),
    ...(rest.smtpRelay !== null && rest.smtpRelay !== undefined ? { smtpRelay: masked(rest.smtpRelay) } : {}),
  }
}
