/**
 * The mail parent's side of the node-wide address limits: one
 * address-limits.ts count for all children, answering their asks
 * (limits-client.ts), giving back what a child held when it exits, and
 * showing how much it holds (`espra_mail_inbound_limit_*`, docs/metrics.md).
 */
import type { ParentContext } from '../../lib/process/role.js'
import { gaugeFrom } from '../../lib/process/metric-sources.js'
import { createAddressLimits, type AddressLimits } from './address-limits.js'

export function startLimitsParent(ctx: ParentContext): AddressLimits {
  const limits = createAddressLimits(ctx.config.smtpMaxConnsPerAddress, ctx.config.smtpMaxMessagesPerMinute)
  ctx.children.onExit((child) => {
    const released = limits.childGone(child)
    if (released > 0) ctx.log.info({ childPid: child, released }, `a mail child exited: its ${released} SMTP connection(s) no longer count against --smtp-max-conns-per-address`)
  })
  gaugeFrom(ctx.metrics, 'espra_mail_inbound_limit_connections', 'open SMTP connections the node-wide --smtp-max-conns-per-address counts', () => limits.size().connections)
  gaugeFrom(ctx.metrics, 'espra_mail_inbound_limit_addresses', 'client addresses (an IPv6 /64 is one) the node-wide limits hold a count for: with open connections, and with messages started this minute', () => {
    const size = limits.size()
    return [
      { labels: { limit: 'connections' }, value: size.connectedAddresses },
      { labels: { limit: 'messages' }, value: size.messageAddresses },
    ]
  })
  return limits
}
