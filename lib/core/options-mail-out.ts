/** Outbound mail options of the mail role (other roles ignore them): docs/mail.md, "Outbound". */
import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { constant, durationIn, flag, integer, option, type OptionArea, port, text } from './config-parsers.js'
import { createError, InvalidValue } from './errors.js'

export interface DkimKey {
  readonly domain: string
  readonly selector: string
  /** Absolute path of the PEM private key (read by the mail node at start). */
  readonly keyFile: string
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const SELECTOR = /^[a-z0-9]([a-z0-9._-]{0,62})$/i
const HOUR = 3_600_000

/** `smtp://` or `smtps://`, a host, an optional port and credentials; thrown sentences say what is allowed. */
export function relayUrl(raw: unknown): string {
  if (typeof raw !== 'string') throw new InvalidValue('must be a URL smtp(s)://[user:password@]host[:port]')
  let url: URL
  try {
    url = new URL(raw.trim())
  } catch {
    throw new InvalidValue('must be a URL smtp(s)://[user:password@]host[:port]')
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new InvalidValue(`must start with smtp:// or smtps:// (got ${url.protocol}//)`)
  if (url.hostname === '') throw new InvalidValue('must name a host')
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') throw new InvalidValue('must be only smtp(s)://[user:password@]host[:port], no path or query')
  return url.toString().replace(/\/$/, '')
}

/** `ip` or `ip:port` (IPv6 in brackets with a port), comma-separated. */
export function dnsServers(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (items === null) throw new InvalidValue('must be DNS servers, ip or ip:port, comma-separated')
  const out: string[] = []
  for (const item of items) {
    const v = typeof item === 'string' ? item.trim() : ''
    if (v === '' && items.length === 1) return []
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)|([0-9a-fA-F:]+))(?::(\d{1,5}))?$/.exec(v)
    const ip = m?.[1] ?? m?.[2] ?? m?.[3] ?? ''
    const p = m?.[4] === undefined ? 53 : Number(m[4])
    if (m === null || isIP(ip) === 0 || p < 1 || p > 65535 || (m[3] !== undefined && m[4] !== undefined)) throw new InvalidValue(`must be DNS servers, ip or ip:port, comma-separated (${JSON.stringify(item)} is not one)`)
    out.push(isIP(ip) === 6 ? `[${ip}]:${p}` : `${ip}:${p}`)
  }
  return out
}

/** `domain:selector:keyfile`, comma-separated (or a JSON array of such strings in the config file). */
export function dkimList(raw: unknown): DkimKey[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (items === null) throw new InvalidValue('must be domain:selector:keyfile, comma-separated for several')
  const out: DkimKey[] = []
  for (const item of items) {
    if (typeof item !== 'string') throw new InvalidValue('must be domain:selector:keyfile strings')
    if (item.trim() === '' && items.length === 1) return []
    const m = /^([^:]+):([^:]+):(.+)$/.exec(item.trim())
    const domain = m?.[1]!.toLowerCase().replace(/\.$/, '') ?? ''
    if (m === null || !DOMAIN.test(domain)) throw new InvalidValue(`must be domain:selector:keyfile (${JSON.stringify(item)} is not)`)
    if (!SELECTOR.test(m[2]!)) throw new InvalidValue(`a DKIM selector is letters, digits, '.', '_' or '-' (${JSON.stringify(m[2])} is not)`)
    if (out.some((k) => k.domain === domain)) throw new InvalidValue(`names ${domain} twice: one key per domain`)
    out.push({ domain, selector: m[2]!, keyFile: resolve(m[3]!) })
  }
  return out
}

export const MAIL_OUT_OPTIONS = [
  option({
    key: 'smtpRelay', flag: '--smtp-relay <url>', env: 'ESPRA_SMTP_RELAY', defaultText: '(none: straight to each domain\'s MX)',
    doc: 'mail: deliver all outbound mail through this relay, smtp://[user:password@]host[:port] (STARTTLS when offered) or smtps:// (TLS from the start)',
    default: constant(null), parse: relayUrl,
  }),
  option({
    key: 'mailConcurrency', flag: '--mail-concurrency <n>', env: 'ESPRA_MAIL_CONCURRENCY', defaultText: '50',
    doc: 'mail: outbound deliveries at once on this node; a delivery waiting for a slot waits, it does not fail',
    parse: integer(1, 1000),
  }),
  option({
    key: 'mailConcurrencyPerDomain', flag: '--mail-concurrency-per-domain <n>', env: 'ESPRA_MAIL_CONCURRENCY_PER_DOMAIN', defaultText: '5',
    doc: 'mail: outbound deliveries at once to one recipient domain on this node (waiting for one is a wait, never a failure)',
    parse: integer(1, 100),
  }),
  option({
    key: 'mailRetryBase', flag: '--mail-retry-base <duration>', env: 'ESPRA_MAIL_RETRY_BASE', defaultText: '1m',
    doc: 'mail: the wait after the first temporary failure (4xx, timeout, connection error); it doubles with every failure up to --mail-retry-max',
    parse: durationIn(100, 24 * HOUR),
  }),
  option({
    key: 'mailRetryMax', flag: '--mail-retry-max <duration>', env: 'ESPRA_MAIL_RETRY_MAX', defaultText: '1h',
    doc: 'mail: the longest wait between two attempts',
    parse: durationIn(100, 24 * HOUR),
  }),
  option({
    key: 'mailGiveUp', flag: '--mail-give-up <duration>', env: 'ESPRA_MAIL_GIVE_UP', defaultText: '48h',
    doc: 'mail: a recipient domain still failing this long after the message was queued gets no more attempts: its recipients bounce',
    parse: durationIn(1000, 720 * HOUR),
  }),
  option({
    key: 'mailDelayWarning', flag: '--mail-delay-warning <duration>', env: 'ESPRA_MAIL_DELAY_WARNING', defaultText: '4h',
    doc: 'mail: once a message has waited this long for a domain, the sender gets one delay notice (RFC 3464, action delayed) for it',
    parse: durationIn(1000, 720 * HOUR),
  }),
  option({
    key: 'mailSmtpTimeout', flag: '--mail-smtp-timeout <duration>', env: 'ESPRA_MAIL_SMTP_TIMEOUT', defaultText: '5m',
    doc: 'mail: an outbound SMTP connection that does not connect, greet or answer within this long is a temporary failure',
    parse: durationIn(100, HOUR),
  }),
  option({
    key: 'mailSuppressionTtl', flag: '--mail-suppression-ttl <duration>', env: 'ESPRA_MAIL_SUPPRESSION_TTL', defaultText: '720h (30 days)',
    doc: 'mail: how long an address that hard-bounced stays suppressed (mail to it fails at once, event suppressed)',
    default: constant(720 * HOUR), parse: durationIn(1000, 8760 * HOUR),
  }),
  option({
    key: 'mailHostname', flag: '--mail-hostname <name>', env: 'ESPRA_MAIL_HOSTNAME', defaultText: '(the machine\'s host name)',
    doc: 'mail: the name this node gives in EHLO and the domain of MAILER-DAEMON in bounces',
    default: () => hostname().toLowerCase(), parse: (raw) => text(DOMAIN, 'a host name such as mx1.example.com')(typeof raw === 'string' ? raw.toLowerCase() : raw),
  }),
  option({
    key: 'mailMxPort', flag: '--mail-mx-port <port>', env: 'ESPRA_MAIL_MX_PORT', defaultText: '25',
    doc: 'mail: the port of MX hosts when delivering without --smtp-relay',
    parse: port,
  }),
  option({
    key: 'mailEvents', flag: '--mail-events <bool>', env: 'ESPRA_MAIL_EVENTS', defaultText: 'true',
    doc: 'mail and app: give the app every outbound mail event (queued, deferred, delivered, bounced, suppressed, delay-warned) as a task its handleMailEvent(event) runs; false: on the message record only',
    parse: flag,
  }),
  option({
    key: 'mailLease', flag: '--mail-lease <duration>', env: 'ESPRA_MAIL_LEASE', defaultText: '60s',
    doc: 'mail: how long a delivery this node took stays reserved (renewed every third of it); the deliveries of a node killed mid-way run again after at most this',
    parse: durationIn(1000, HOUR),
  }),
  option({
    key: 'mailDns', flag: '--mail-dns <list>', env: 'ESPRA_MAIL_DNS', defaultText: '(the system\'s resolvers)',
    doc: 'mail: DNS servers to read MX, A and AAAA records from when delivering without --smtp-relay, ip or ip:port, comma-separated',
    default: constant([]), parse: dnsServers,
  }),
  option({
    key: 'dkim', flag: '--dkim <list>', env: 'ESPRA_DKIM', defaultText: '(none: mail is not signed)',
    doc: 'mail: DKIM-sign mail from these domains, domain:selector:keyfile (an RSA private key in PEM), comma-separated for several; each file is checked at start; admin mail dkim-record prints the DNS record',
    details: 'mail: DKIM-sign mail from these domains, `domain:selector:keyfile` (an RSA private key in PEM), comma-separated for several; each file is checked at start: a missing or bad key stops the node; `admin mail dkim-record` prints the DNS record',
    default: constant([]), parse: dkimList,
  }),
  option({
    key: 'mailMtaSts', flag: '--mail-mta-sts <bool>', env: 'ESPRA_MAIL_MTA_STS', defaultText: 'true',
    doc: 'mail: honour a recipient domain\'s MTA-STS policy (RFC 8461) when delivering to its MX hosts: under enforce only the MX hosts it names, with STARTTLS and a valid certificate, else the mail is deferred; under testing logged and delivered',
    parse: flag,
  }),
  option({
    key: 'mailMtaStsFetch', flag: '--mail-mta-sts-fetch <address>', env: 'ESPRA_MAIL_MTA_STS_FETCH', defaultText: '(none: mta-sts.<domain>:443)',
    doc: 'mail, for testing only: fetch every MTA-STS policy from this address (the TLS name and Host stay mta-sts.<domain>)',
    default: constant(null), parse: hostPort,
  }),
  option({
    key: 'mailTlsCa', flag: '--mail-tls-ca <file>', env: 'ESPRA_MAIL_TLS_CA', defaultText: '(none: the system\'s CAs)',
    doc: 'mail: PEM CA certificates trusted for outbound TLS besides the system\'s: the relay, MTA-STS policy fetches and MX hosts under an enforced policy (a private CA; tests)',
    default: constant(null), parse: pemFile,
  }),
] as const

export const MAIL_OUT_AREA: OptionArea<typeof MAIL_OUT_OPTIONS> = { heading: 'Mail: outbound delivery', options: MAIL_OUT_OPTIONS }

/** `host:port` (`[v6]:port`); thrown sentences say what is allowed. */
function hostPort(raw: unknown): string {
  const m = typeof raw === 'string' ? /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim()) : null
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new InvalidValue('must be host:port (e.g. 127.0.0.1:8443)')
  return `${m[1]}:${m[2]}`
}

/** An absolute path to a readable file holding at least one PEM certificate. */
function pemFile(raw: unknown): string {
  if (typeof raw !== 'string' || raw.trim() === '') throw new InvalidValue('must be a file of PEM certificates')
  const path = resolve(raw.trim())
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new InvalidValue(`${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new InvalidValue(`${path} holds no PEM certificate`)
  return path
}

/** Throws `ESPRA_ERR_CONFIG_INVALID` when `pem` is not an RSA private key of at least 1024 bits (what nodemailer signs with, rsa-sha256). */
export function checkDkimKey(pem: string, what: string): void {
  let key
  try {
    key = createPrivateKey(pem)
  } catch {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--dkim', reason: `${what} is not a PEM private key` })
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
  if (key.asymmetricKeyType !== 'rsa' || bits < 1024) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--dkim', reason: `${what} must be an RSA private key of at least 1024 bits (got ${key.asymmetricKeyType ?? 'unknown'}${bits > 0 ? ` ${bits}` : ''}); signatures are rsa-sha256` })
  }
}

/** Reads every DKIM key once at start (mail only): a missing file or one that is not a private key stops the node with a line naming it. */
export function checkMailOut(config: Record<string, unknown>): void {
  if (config['role'] !== 'mail') return
  for (const k of config['dkim'] as DkimKey[]) {
    let pem: string
    try {
      pem = readFileSync(k.keyFile, 'utf8')
    } catch (err) {
      throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--dkim', reason: `the key file of ${k.domain}, ${k.keyFile}, cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` })
    }
    checkDkimKey(pem, `${k.keyFile} (for ${k.domain})`)
  }
}
