/**
 * Delivery status notifications (RFC 3464): the bounce a sender gets for
 * recipients that failed for good, and the delay notice for ones still being
 * retried. A `multipart/report; report-type=delivery-status` with a
 * human-readable part, the `message/delivery-status` part, and the original
 * message's header section (`text/rfc822-headers`). Sent from the null
 * sender, so a notice never bounces in turn.
 */
import { randomBytes } from 'node:crypto'

export interface DsnRecipient {
  readonly address: string
  /** The remote answer or our reason, e.g. `550 5.1.1 no such user`. */
  readonly diagnostic: string
  /** The host that answered, when one did. */
  readonly remote: string | null
}

export interface DsnInput {
  readonly action: 'failed' | 'delayed'
  /** The node's host name (Reporting-MTA, MAILER-DAEMON's domain). */
  readonly reportingMta: string
  /** The original envelope sender: the notice's recipient. */
  readonly to: string
  readonly originalMessageId: string
  readonly originalSubject: string
  readonly originalHeaders: string
  readonly arrivalDate: number
  readonly recipients: readonly DsnRecipient[]
  /** delayed: until when we keep trying (ms). */
  readonly until?: number
}

/** `5.1.1` from `550 5.1.1 …`, else the generic class of the reply code (or 4.4.1 / 5.0.0 for our own reasons). */
export function statusOf(diagnostic: string, action: DsnInput['action']): string {
  const m = /^([245])\d\d[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(diagnostic)
  if (m !== null) return m[2]!
  const code = /^([245])\d\d\b/.exec(diagnostic)
  if (code !== null) return `${code[1]}.0.0`
  return action === 'delayed' ? '4.4.1' : '5.4.7'
}

const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 900)

export function buildDsn(d: DsnInput): { raw: Buffer; messageId: string; subject: string } {
  const boundary = `=_espra_${randomBytes(12).toString('hex')}`
  const messageId = `${Date.now().toString(36)}.${randomBytes(8).toString('hex')}@${d.reportingMta}`
  const subject = d.action === 'failed' ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)'
  const human = d.action === 'failed'
    ? 'Your message could not be delivered to one or more recipients. It will not be retried.'
    : `Your message has not been delivered to one or more recipients yet. Delivery will be retried${d.until !== undefined ? ` until ${new Date(d.until).toUTCString()}` : ''}; you do not need to send it again.`
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.reportingMta}>`,
    `To: <${d.to}>`,
    `Subject: ${subject}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${messageId}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated delivery status notification.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    human,
    '',
    `Original message: <${oneLine(d.originalMessageId)}>, subject "${oneLine(d.originalSubject)}"`,
    '',
    ...d.recipients.map((r) => `<${r.address}>: ${oneLine(r.diagnostic)}`),
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${d.reportingMta}`,
    `Arrival-Date: ${new Date(d.arrivalDate).toUTCString().replace('GMT', '+0000')}`,
    ...d.recipients.flatMap((r) => [
      '',
      `Final-Recipient: rfc822; ${r.address}`,
      `Action: ${d.action}`,
      `Status: ${statusOf(r.diagnostic, d.action)}`,
      ...(r.remote !== null ? [`Remote-MTA: dns; ${oneLine(r.remote)}`] : []),
      `Diagnostic-Code: smtp; ${oneLine(r.diagnostic)}`,
      ...(d.action === 'delayed' && d.until !== undefined ? [`Will-Retry-Until: ${new Date(d.until).toUTCString().replace('GMT', '+0000')}`] : []),
    ]),
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    d.originalHeaders.replace(/\r?\n$/, '').split(/\r?\n/).join('\r\n'),
    '',
    `--${boundary}--`,
    '',
  ]
  return { raw: Buffer.from(lines.join('\r\n'), 'utf8'), messageId, subject }
}

/** The header section of a raw message (at most 64 KB of it). */
export function headerSection(raw: Buffer): string {
  const head = raw.subarray(0, 64 * 1024).toString('latin1')
  const end = head.search(/\r?\n\r?\n/)
  return end === -1 ? head : head.slice(0, end)
}
