/** Mail-role options of the inbound side added after the first slice (other roles ignore these): docs/mail.md. */
import { isIP } from 'node:net'
import { createError, InvalidValue } from './errors.js'
import { constant, durationIn, flag, integer, oneOf, option, type OptionArea, parseHostPort, parseSize } from './config-parsers.js'

export const MAIL_INBOUND_OPTIONS = [
  option({
    key: 'mailMaxLineLength', flag: '--mail-max-line-length <octets>', env: 'ESPRA_MAIL_MAX_LINE_LENGTH', defaultText: '998',
    doc: 'mail: the longest line a message may have, in octets without its CRLF (998 to 1048576; RFC 5322 sets 998); a longer line refuses the message 554 5.6.0 at the end of DATA (nothing stored)',
    parse: integer(998, 1024 ** 2),
  }),
  option({
    key: 'mailMaxHeaderSize', flag: '--mail-max-header-size <size>', env: 'ESPRA_MAIL_MAX_HEADER_SIZE', defaultText: '64KB',
    doc: 'mail: the largest header section (everything before the first empty line) a message may have (1KB to 1MB); a larger one refuses the message 552 5.3.4 at the end of DATA (nothing stored)',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 1024 ** 2) throw new InvalidValue('must be a size from 1KB to 1MB')
      return n
    },
  }),
  option({
    key: 'mailAuth', flag: '--mail-auth <bool>', env: 'ESPRA_MAIL_AUTH', defaultText: 'true',
    doc: 'mail: verify SPF, DKIM, DMARC and ARC of each message (mailauth) and hand the results to handleMail as message.auth: the app node verifies the stored message after the 250, the mail node before it only with --mail-dmarc-reject; results are not enforced unless --mail-dmarc-reject',
    parse: flag,
  }),
  option({
    key: 'mailAuthTimeout', flag: '--mail-auth-timeout <duration>', env: 'ESPRA_MAIL_AUTH_TIMEOUT', defaultText: '5s',
    doc: 'mail: how long the authentication results are waited for once the message is read (100ms to 60s): by the app node\'s handoff before handleMail (the 250 does not wait), with --mail-dmarc-reject at the end of DATA before the answer; past it they are temperror and the message is taken',
    parse: durationIn(100, 60_000),
  }),
  option({
    key: 'mailDmarcReject', flag: '--mail-dmarc-reject <bool>', env: 'ESPRA_MAIL_DMARC_REJECT', defaultText: 'false',
    doc: 'mail: refuse a message with 550 5.7.1 at the end of DATA (nothing stored) when DMARC fails and the From domain publishes p=reject; needs --mail-auth',
    parse: flag,
  }),
  option({
    key: 'mailDnsServers', flag: '--mail-dns-servers <list>', env: 'ESPRA_MAIL_DNS_SERVERS', defaultText: '(the system resolver)',
    doc: 'mail: DNS servers for the SPF/DKIM/DMARC lookups, comma-separated ip or ip:port (a JSON array in a config file), e.g. a local caching resolver',
    default: constant([]), parse: dnsServerList,
  }),
  option({
    key: 'mailRecipientTimeout', flag: '--mail-recipient-timeout <duration>', env: 'ESPRA_MAIL_RECIPIENT_TIMEOUT', defaultText: '2s',
    doc: 'mail: how long RCPT waits for the app\'s acceptRecipient(address) answer (100ms to 30s); past it, or with no app node, --mail-recipient-fail decides',
    parse: durationIn(100, 30_000),
  }),
  option({
    key: 'mailRecipientFail', flag: '--mail-recipient-fail <mode>', env: 'ESPRA_MAIL_RECIPIENT_FAIL', defaultText: 'open',
    doc: 'mail: when the app cannot say whether it takes a recipient (timeout, no app node, an error): open takes it, closed answers 451 4.3.0 (the client tries again later)',
    parse: oneOf(['open', 'closed'] as const),
  }),
  option({
    key: 'mailInboundRetention', flag: '--mail-inbound-retention <duration>', env: 'ESPRA_MAIL_INBOUND_RETENTION', defaultText: '168h',
    doc: 'seed: an inbound message handed to handleMail is removed (its record, raw bytes and dedupe key) this long after the handoff, never before --mail-dedupe-window has passed since it arrived (1s to 87600h)',
    details: 'seed: an inbound message handed to `handleMail` is removed (its record, raw bytes and dedupe key) this long after the handoff, never before `--mail-dedupe-window` has passed since it arrived (1s to 87600h) ([mail.md](mail.md), "Retention")',
    parse: durationIn(1000, 87_600 * 3_600_000),
  }),
  option({
    key: 'mailInboundFailedRetention', flag: '--mail-inbound-failed-retention <duration>', env: 'ESPRA_MAIL_INBOUND_FAILED_RETENTION', defaultText: '720h',
    doc: 'seed: an inbound message whose handoff is a dead letter is removed this long after it failed (until then admin mail inbound --failed lists it and retry hands it again) (1s to 87600h)',
    parse: durationIn(1000, 87_600 * 3_600_000),
  }),
  option({
    key: 'mailOutboundRetention', flag: '--mail-outbound-retention <duration>', env: 'ESPRA_MAIL_OUTBOUND_RETENTION', defaultText: '168h',
    doc: 'seed: an outbound message that is finished (delivered, failed or dropped) is removed with its raw bytes this long after its last event (until then admin mail show has it); keep it well above --mail-smtp-timeout (1s to 87600h)',
    details: 'seed: an outbound message that is finished (delivered, failed or dropped) is removed with its raw bytes this long after its last event (until then `admin mail show` has it), and expired suppressions go too; keep it well above `--mail-smtp-timeout` (1s to 87600h) ([mail.md](mail.md), "Outbound")',
    parse: durationIn(1000, 87_600 * 3_600_000),
  }),
] as const

export const MAIL_INBOUND_AREA: OptionArea<typeof MAIL_INBOUND_OPTIONS> = { heading: 'Mail: inbound checks and retention', options: MAIL_INBOUND_OPTIONS }

/** `ip` or `ip:port` items, comma-separated (or a JSON array); IPv6 as `[::1]:53`. */
export function dnsServerList(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
  const bad = (item: unknown): never => {
    throw new InvalidValue(`must be a comma-separated list of DNS server addresses, ip or ip:port (${JSON.stringify(item)} is not one)`)
  }
  if (items === null) bad(raw)
  return items!.map((item) => {
    if (typeof item !== 'string') return bad(item)
    if (isIP(item) !== 0) return item
    try {
      const { host, port } = parseHostPort(item)
      if (isIP(host) === 0) return bad(item)
      return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
    } catch {
      return bad(item)
    }
  })
}

/** Checks the inbound options together once every option is resolved (mail only). */
export function checkMailInbound(config: Record<string, unknown>): void {
  if (config['role'] !== 'mail') return
  if (config['mailDmarcReject'] === true && config['mailAuth'] === false) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--mail-dmarc-reject', reason: 'needs --mail-auth (DMARC is not checked with --mail-auth false)' })
  }
}
