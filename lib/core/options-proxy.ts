/** Proxy options: the live host, routing-key handlers and per-address limits. */
import { resolve } from 'node:path'
import { constant, durationIn, flag, integer, option, type OptionArea, parseSize, port, text } from './config-parsers.js'
import { checkCidr } from './client-address.js'
import { createError, InvalidValue } from './errors.js'
import { readTlsFiles } from './tls-files.js'

export const ROUTE_KEY_FORMS = 'path:/prefix/, query:<name>, cookie:<name>, header:<name>, ip'

/** Validates one proxy routing-key handler (`--route-keys` item); throws an `InvalidValue` saying what is allowed. */
export function checkRouteKey(item: string): string {
  if (item === 'ip') return item
  const m = /^(path|query|cookie|header):(.+)$/.exec(item)
  if (!m) throw new InvalidValue(`each item must be one of ${ROUTE_KEY_FORMS} (got '${item}')`)
  const arg = m[2]!
  if (m[1] === 'path' && !/^\/([^/?#\s]+\/)*$/.test(arg)) throw new InvalidValue(`path:<prefix> must start and end with '/', e.g. path:/ch/ (got '${item}')`)
  if (m[1] !== 'path' && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(arg)) throw new InvalidValue(`'${arg}' is not a valid ${m[1]} name`)
  return item
}

export const PROXY_OPTIONS = [
  option({
    key: 'liveDomain', flag: '--live-domain <domain>', env: 'ESPRA_LIVE_DOMAIN', defaultText: 'localhost',
    doc: 'proxy: serves the live host <region>.live.<domain>; any other Host gets a quick 404',
    parse: (raw) => text(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,200}[A-Za-z0-9])?$/, 'a domain name')(raw).toLowerCase(),
  }),
  option({
    key: 'routeKeys', flag: '--route-keys <list>', env: 'ESPRA_ROUTE_KEYS', defaultText: 'cookie:espra_session,ip',
    doc: `proxy: where a request's routing key comes from, first match wins: ${ROUTE_KEY_FORMS}`,
    details: "proxy: where a request's routing key comes from, first match wins: `path:/prefix/` (the segment after the prefix), `query:<name>`, `cookie:<name>`, `header:<name>`, `ip`",
    parse: (raw) => {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
      if (!list || list.length === 0 || list.some((s) => typeof s !== 'string')) throw new InvalidValue(`must be a comma-separated list of ${ROUTE_KEY_FORMS}`)
      return list.map((s: string) => checkRouteKey(s))
    },
  }),
  option({
    key: 'maxHeaderSize', flag: '--max-header-size <size>', env: 'ESPRA_MAX_HEADER_SIZE', defaultText: '16KB',
    doc: 'proxy: largest request head (request line and headers); a larger one gets 431',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 1024 ** 2) throw new InvalidValue('must be a size from 1KB to 1MB')
      return n
    },
  }),
  option({
    key: 'maxConnsPerAddress', flag: '--max-conns-per-address <n>', env: 'ESPRA_MAX_CONNS_PER_ADDRESS', defaultText: '1000',
    doc: 'proxy: open connections one client address may hold on the node, all children together; more get 429 (0: no limit)',
    parse: integer(0, 10_000_000),
  }),
  option({
    key: 'maxRpsPerAddress', flag: '--max-rps-per-address <n>', env: 'ESPRA_MAX_RPS_PER_ADDRESS', defaultText: '0',
    doc: 'proxy: requests per second one client address may send to the node, all children together (burst of the same size); more get 429 (0: no limit)',
    parse: integer(0, 10_000_000),
  }),
  option({
    key: 'rebalanceSpread', flag: '--rebalance-spread <duration>', env: 'ESPRA_REBALANCE_SPREAD', defaultText: '30s',
    doc: 'proxy: when a Live node joins, WebSocket and SSE clients whose routing key it now owns are told to reconnect, spread at random over this long (0: they stay where they are)',
    parse: durationIn(0, 3_600_000),
  }),
  option({
    key: 'trustedProxies', flag: '--trusted-proxies <cidrs>', env: 'ESPRA_TRUSTED_PROXIES', defaultText: '(none)',
    doc: 'proxy, app: load balancers (IPs or CIDR blocks, comma-separated) whose PROXY protocol v2 header and X-Forwarded-For name the client; nothing is trusted by default',
    default: constant([] as readonly string[]), parse: (raw) => {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
      if (!list || list.some((s) => typeof s !== 'string')) throw new InvalidValue('must be a comma-separated list of IP addresses or CIDR blocks')
      return list.map((s: string) => checkCidr(s))
    },
  }),
  option({
    key: 'tlsCert', flag: '--tls-cert <file>', env: 'ESPRA_TLS_CERT', defaultText: '(none: no TLS)',
    doc: 'proxy: PEM certificate (then its chain) to terminate TLS with on --tls-port; needs --tls-key; re-read by new children on SIGHUP',
    details: 'proxy: PEM certificate (then its chain) to terminate TLS with on `--tls-port`; needs `--tls-key`; checked at start, re-read by new children on SIGHUP',
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'tlsKey', flag: '--tls-key <file>', env: 'ESPRA_TLS_KEY', defaultText: '(none)',
    doc: 'proxy: the PEM private key of --tls-cert (unencrypted)',
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'tlsPort', flag: '--tls-port <port>', env: 'ESPRA_TLS_PORT', defaultText: '8443',
    doc: 'proxy: the HTTPS port (on --bind) when --tls-cert is set',
    parse: port,
  }),
  option({
    key: 'httpsRedirect', flag: '--https-redirect <bool>', env: 'ESPRA_HTTPS_REDIRECT', defaultText: 'false',
    doc: 'proxy: answer plain-HTTP requests for the live host with 308 to https://<host>:<tls-port> (health checks excepted); needs --tls-cert',
    parse: flag,
  }),
] as const

export const PROXY_AREA: OptionArea<typeof PROXY_OPTIONS> = { heading: 'Proxy', options: PROXY_OPTIONS }

/**
 * Checks the TLS options together once every option is resolved (proxy
 * only: other roles ignore them). Reads the certificate and key, so a bad
 * file stops the node at start with a line naming the option.
 */
export function checkProxyTls(config: Record<string, unknown>): void {
  if (config['role'] !== 'proxy') return
  const fail = (option: string, reason: string): never => {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason })
  }
  const cert = config['tlsCert'] as string | null
  const key = config['tlsKey'] as string | null
  if (cert === null && key !== null) fail('--tls-cert', 'is required with --tls-key')
  if (cert !== null && key === null) fail('--tls-key', 'is required with --tls-cert')
  if (cert === null) {
    if (config['httpsRedirect'] === true) fail('--https-redirect', 'needs TLS: set --tls-cert and --tls-key')
    return
  }
  if (config['tlsPort'] === config['port']) fail('--tls-port', `must differ from --port (${String(config['port'])})`)
  readTlsFiles(cert, key!)
}
