/** Mail-role options (other roles ignore these): docs/mail.md. */
import { resolve } from 'node:path'
import { constant, durationIn, flag, integer, option, type OptionArea, parseSize, port, text } from './config-parsers.js'
import { createError, EspraError, InvalidValue } from './errors.js'
import { readTlsFiles } from './tls-files.js'

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A comma-separated list (or a JSON array in a config file) of domain names, lower-cased. Throws a sentence saying what is allowed. */
export function mailDomainList(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (items === null) throw new InvalidValue('must be a comma-separated list of domains, e.g. example.com,mail.example.com')
  const out: string[] = []
  for (const item of items) {
    const domain = typeof item === 'string' ? item.trim().toLowerCase().replace(/\.$/, '') : ''
    if (domain === '' && items.length === 1) return []
    if (!DOMAIN.test(domain)) throw new InvalidValue(`must be a comma-separated list of domains, e.g. example.com,mail.example.com (${JSON.stringify(item)} is not one)`)
    if (!out.includes(domain)) out.push(domain)
  }
  return out
}

export const MAIL_OPTIONS = [
  option({
    key: 'smtpPort', flag: '--smtp-port <port>', env: 'ESPRA_SMTP_PORT', defaultText: '25',
    doc: 'mail: the SMTP port (on --bind) inbound mail arrives on; the parent binds it once and every child accepts on it',
    details: 'mail: the SMTP port (on `--bind`) inbound mail arrives on; the parent binds it once and every child accepts on it ([mail.md](mail.md))',
    parse: port,
  }),
  option({
    key: 'mailDomains', flag: '--mail-domains <list>', env: 'ESPRA_MAIL_DOMAINS', defaultText: '(none: every recipient refused)',
    doc: 'mail: the domains mail is accepted for, comma-separated (example.com,example.org); any other recipient gets 550 5.1.1 at RCPT, before DATA',
    default: constant([]), parse: mailDomainList,
  }),
  option({
    key: 'mailMaxSize', flag: '--mail-max-size <size>', env: 'ESPRA_MAIL_MAX_SIZE', defaultText: '10MB',
    doc: 'mail: the largest message accepted; advertised as SIZE, refused 552 at MAIL FROM when declared larger, and cut while the data streams (the rest discarded unbuffered, 552 at the end of DATA)',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 1024 ** 3) throw new InvalidValue('must be a size from 1KB to 1GB')
      return n
    },
  }),
  option({
    key: 'mailMaxRecipients', flag: '--mail-max-recipients <n>', env: 'ESPRA_MAIL_MAX_RECIPIENTS', defaultText: '100',
    doc: 'mail: recipients accepted in one transaction (1 to 250); past it RCPT answers 452 4.5.3 (the client sends the rest in another transaction)',
    // At most 250: the envelope travels in a datastore record and a task payload, each at most 64 KB, and an address may be 254 bytes.
    parse: integer(1, 250),
  }),
  option({
    key: 'smtpMaxConnsPerAddress', flag: '--smtp-max-conns-per-address <n>', env: 'ESPRA_SMTP_MAX_CONNS_PER_ADDRESS', defaultText: '20',
    doc: 'mail: open SMTP connections one client address may hold on the node, all children together (0: no limit); one more is answered 421 4.7.0 and closed',
    details: 'mail: open SMTP connections one client address may hold on the node (0: no limit); one more is answered 421 4.7.0 and closed. Counted by the parent for all children together (each child asks it once per connection); an IPv6 client is counted by its /64, an IPv4-mapped one (`::ffff:a.b.c.d`) as its IPv4 address; a parent that does not answer within 1s lets the connection in (fail open, `espra_mail_inbound_limit_unchecked_total`) ([mail.md](mail.md#address-limits))',
    parse: integer(0, 100_000),
  }),
  option({
    key: 'smtpMaxMessagesPerMinute', flag: '--smtp-max-messages-per-minute <n>', env: 'ESPRA_SMTP_MAX_MESSAGES_PER_MINUTE', defaultText: '120',
    doc: 'mail: messages one client address may start (MAIL FROM) per minute on the node, all children together (0: no limit); past it 450 4.7.1 until the next minute',
    details: 'mail: messages one client address may start (MAIL FROM) per calendar minute on the node (0: no limit); past it 450 4.7.1 until the next minute. Counted by the parent for all children together (one ask per MAIL FROM, none per recipient), by the same address key as `--smtp-max-conns-per-address`; fails open like it ([mail.md](mail.md#address-limits))',
    parse: integer(0, 1_000_000),
  }),
  option({
    key: 'smtpTlsCert', flag: '--smtp-tls-cert <file>', env: 'ESPRA_SMTP_TLS_CERT', defaultText: '(none: no STARTTLS)',
    doc: 'mail: PEM certificate (then its chain) the SMTP port offers with STARTTLS; needs --smtp-tls-key; re-read by new children on SIGHUP',
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'smtpTlsKey', flag: '--smtp-tls-key <file>', env: 'ESPRA_SMTP_TLS_KEY', defaultText: '(none)',
    doc: 'mail: the PEM private key of --smtp-tls-cert (unencrypted)',
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'smtpRequireTls', flag: '--smtp-require-tls <bool>', env: 'ESPRA_SMTP_REQUIRE_TLS', defaultText: 'false',
    doc: 'mail: refuse MAIL FROM with 530 5.7.0 until the client has done STARTTLS; needs --smtp-tls-cert',
    parse: flag,
  }),
  option({
    key: 'mailDedupeWindow', flag: '--mail-dedupe-window <duration>', env: 'ESPRA_MAIL_DEDUPE_WINDOW', defaultText: '24h',
    doc: 'mail: a message sent again within this long (same Message-ID, same bytes, same recipients: a client that lost our 250) is answered 250 with the first id and not handed to the app twice',
    details: 'mail: a message sent again within this long (same Message-ID, same bytes, same recipients: a client that lost our 250) is answered 250 with the first id and not handed to the app twice (1s to 720h); seed: no inbound message is swept before this long has passed since it arrived',
    parse: durationIn(1000, 30 * 24 * 3_600_000),
  }),
] as const

export const MAIL_AREA: OptionArea<typeof MAIL_OPTIONS> = { heading: 'Mail: listener, limits and queue', options: MAIL_OPTIONS }

/**
 * Checks the STARTTLS options together once every option is resolved (mail
 * only). Reads the certificate and key, so a bad file stops the node at
 * start with a line naming the option.
 */
export function checkMailTls(config: Record<string, unknown>): void {
  if (config['role'] !== 'mail') return
  const fail = (option: string, reason: string): never => {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason })
  }
  const cert = config['smtpTlsCert'] as string | null
  const key = config['smtpTlsKey'] as string | null
  if (cert === null && key !== null) fail('--smtp-tls-cert', 'is required with --smtp-tls-key')
  if (cert !== null && key === null) fail('--smtp-tls-key', 'is required with --smtp-tls-cert')
  if (cert === null) {
    if (config['smtpRequireTls'] === true) fail('--smtp-require-tls', 'needs STARTTLS: set --smtp-tls-cert and --smtp-tls-key')
    return
  }
  try {
    readTlsFiles(cert, key!)
  } catch (err) {
    // The shared reader names the proxy's options; these are the mail role's.
    const e = err as EspraError
    const option = String((e.details as { option?: string } | undefined)?.option ?? '--tls-cert').replace('--tls-', '--smtp-tls-')
    fail(option, e.message.replace(/^--tls-(cert|key): /, ''))
  }
}
