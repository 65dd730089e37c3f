/**
 * A mail node's counters (see docs/metrics.md): inbound messages accepted and
 * SMTP commands refused by reason in each child, outbound recipients by
 * outcome in the parent (which runs deliveries). Read at scrape time.
 */
import type { Registry } from 'prom-client'
import { counterFrom } from '../../lib/process/metric-sources.js'

/** Why the SMTP server said no (to a connection, a MAIL, a RCPT or a message), each with the code it answers. */
export const REFUSAL_REASONS = {
  too_many_connections: 421,
  tls_required: 530,
  rate_limited: 450,
  bad_address: 553,
  unknown_domain: 550,
  too_many_recipients: 452,
  unknown_recipient: 550,
  recipient_check_failed: 451,
  line_too_long: 554,
  header_too_large: 552,
  too_large: 552,
  dmarc: 550,
  queue_failed: 451,
} as const

export type RefusalReason = keyof typeof REFUSAL_REASONS

export class InboundCounters {
  /** Messages stored and queued for the app (first receipt), and retries of one already stored. */
  accepted = 0
  duplicates = 0
  /** Connections and messages taken without the parent's limit check (it did not answer in time: limits-client.ts fails open). */
  readonly unchecked = { connections: 0, messages: 0 }
  private readonly refusals = Object.fromEntries(Object.keys(REFUSAL_REASONS).map((r) => [r, 0])) as Record<RefusalReason, number>

  refused(reason: RefusalReason): void {
    this.refusals[reason]++
  }

  register(registry: Registry): void {
    counterFrom(registry, 'espra_mail_inbound_messages_total', 'inbound messages answered 250, by result (accepted: stored and queued for the app; duplicate: a retry of one already stored)', () => [
      { labels: { result: 'accepted' }, value: this.accepted },
      { labels: { result: 'duplicate' }, value: this.duplicates },
    ])
    counterFrom(registry, 'espra_mail_inbound_refusals_total', 'SMTP refusals by reason and reply code (connections, MAIL, RCPT and messages)', () =>
      (Object.keys(REFUSAL_REASONS) as RefusalReason[]).map((reason) => ({ labels: { reason, code: String(REFUSAL_REASONS[reason]) }, value: this.refusals[reason] })),
    )
    counterFrom(registry, 'espra_mail_inbound_limit_unchecked_total', 'connections and messages taken without the node-wide address limit check because the parent did not answer in time (fail open)', () => [
      { labels: { limit: 'connections' }, value: this.unchecked.connections },
      { labels: { limit: 'messages' }, value: this.unchecked.messages },
    ])
  }
}

/** What became of each outbound recipient a delivery attempt handled. */
export type DeliveryOutcome = 'delivered' | 'deferred' | 'bounced' | 'suppressed'

export class OutboundCounters {
  readonly recipients: Record<DeliveryOutcome, number> = { delivered: 0, deferred: 0, bounced: 0, suppressed: 0 }

  register(registry: Registry): void {
    counterFrom(registry, 'espra_mail_outbound_recipients_total', 'outbound recipients by the outcome of a delivery attempt (deferred ones are tried again; bounced includes giving up)', () =>
      (Object.keys(this.recipients) as DeliveryOutcome[]).map((outcome) => ({ labels: { outcome }, value: this.recipients[outcome] })),
    )
  }
}
