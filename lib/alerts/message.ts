/**
 * What a notification says, per sink format (docs/alerts.md, "Sinks"): the
 * JSON body of a generic webhook, the `{text}` of a Slack-compatible one, and
 * the subject and text of an alert mail.
 */
import type { AlertNotification } from './alert.js'

const WORD = { opened: 'OPENED', grouped: 'OPENED (grouped)', resolved: 'RESOLVED' } as const
/** Mail bodies stay far under the outbound queue's inline limit (48 KB). */
const MAX_MAIL_TEXT = 32 * 1024

/** `{event, epoch, alert}` as JSON: the generic webhook body (`epoch`: the engine lease's, when there is one). */
export function jsonBody(n: AlertNotification): string {
  return JSON.stringify(n.epoch === undefined ? { event: n.event, alert: n.alert } : { event: n.event, epoch: n.epoch, alert: n.alert })
}

function headline(n: AlertNotification): string {
  const { alert } = n
  const flapping = alert.flapping ? ' (flapping)' : ''
  return `[espra] ${WORD[n.event]} ${alert.rule}${flapping}: ${alert.summary}`
}

/** `{text}`: what Slack (and Mattermost, Rocket.Chat, Discord's /slack endpoint) take. */
export function slackBody(n: AlertNotification): string {
  const { alert } = n
  const lines = [headline(n)]
  if (alert.grouped) for (const m of alert.members) lines.push(`• ${m.summary}`)
  const opened = new Date(alert.openedAt).toISOString()
  lines.push(n.event === 'resolved' && alert.resolvedAt !== null ? `opened ${opened}, resolved ${new Date(alert.resolvedAt).toISOString()} (alert ${alert.id})` : `opened ${opened} (alert ${alert.id})`)
  return JSON.stringify({ text: lines.join('\n') })
}

export function mailSubject(n: AlertNotification): string {
  return headline(n).slice(0, 200)
}

export function mailText(n: AlertNotification): string {
  const { alert } = n
  const lines = [
    headline(n), '',
    `alert:    ${alert.id}`,
    `rule:     ${alert.rule}`,
    `nodes:    ${alert.nodes.length > 0 ? alert.nodes.join(', ') : '(cluster)'}`,
    `opened:   ${new Date(alert.openedAt).toISOString()}`,
    ...(alert.resolvedAt !== null ? [`resolved: ${new Date(alert.resolvedAt).toISOString()}`] : []),
    '',
    ...alert.members.map((m) => `- ${m.summary}${m.resolvedAt !== null ? ` (clear since ${new Date(m.resolvedAt).toISOString()})` : ''}`),
    '', 'details:', JSON.stringify(alert.details, null, 2),
  ]
  return lines.join('\n').slice(0, MAX_MAIL_TEXT)
}
