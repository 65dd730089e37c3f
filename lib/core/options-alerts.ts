/** Admin-role options for monitoring and alerts (other roles ignore these): docs/alerts.md. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { constant, durationIn, flag, integer, oneOf, option, type OptionArea, parseSize, text } from './config-parsers.js'
import { createError, InvalidValue } from './errors.js'

export const WEBHOOK_FORMATS = ['json', 'slack'] as const
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number]

/** A comma-separated list (or a JSON array in a config file) of http(s) URLs. Throws a sentence saying what is allowed. */
export function webhookList(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  const allowed = 'a comma-separated list of http:// or https:// URLs'
  if (items === null) throw new InvalidValue(`must be ${allowed}`)
  const out: string[] = []
  for (const item of items) {
    const value = typeof item === 'string' ? item.trim() : ''
    if (value === '' && items.length === 1) return []
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw new InvalidValue(`must be ${allowed} (${JSON.stringify(item)} is not one)`)
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') throw new InvalidValue(`must be ${allowed} (${JSON.stringify(item)} is not one)`)
    if (!out.includes(url.toString())) out.push(url.toString())
  }
  return out
}

const EMAIL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}$/

/** A comma-separated list (or a JSON array) of plain email addresses. */
export function emailList(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (items === null) throw new InvalidValue('must be a comma-separated list of email addresses')
  const out: string[] = []
  for (const item of items) {
    const value = typeof item === 'string' ? item.trim() : ''
    if (value === '' && items.length === 1) return []
    if (!EMAIL.test(value)) throw new InvalidValue(`must be a comma-separated list of email addresses (${JSON.stringify(item)} is not one)`)
    if (!out.includes(value)) out.push(value)
  }
  return out
}

const count = (max: number) => integer(0, max)

export const ALERT_OPTIONS = [
  option({
    key: 'alerts', flag: '--alerts <bool>', env: 'ESPRA_ALERTS', defaultText: 'true',
    doc: 'admin: compete for the alert engine lease; the admin node holding it probes every node and runs the alert engine (one per cluster, whatever the number of admin nodes)',
    details: 'admin: compete for the alert engine lease; the admin node holding it probes every node and runs the alert engine in its parent, one per cluster whatever the number of admin nodes ([alerts](alerts.md))',
    parse: flag,
  }),
  option({
    key: 'alertLease', flag: '--alert-lease <duration>', env: 'ESPRA_ALERT_LEASE', defaultText: '10s',
    doc: 'admin: the alert engine lease (kept in the datastore): of the admin nodes with --alerts true one holds it and runs the engine, renewing every quarter lease; the others take over within 2x this after it dies, at once after it stops',
    details: 'admin: the alert engine lease, kept in the datastore (1s to 10m): of the admin nodes with `--alerts true` one holds it and runs the engine, renewing it every quarter lease; a standby takes over within 2× this after the holder dies, within a quarter lease after it stops ([alerts](alerts.md#one-engine-per-cluster))',
    parse: durationIn(1000, 600_000),
  }),
  option({
    key: 'probeInterval', flag: '--probe-interval <duration>', env: 'ESPRA_PROBE_INTERVAL', defaultText: '10s',
    doc: 'admin: how often every registered node\'s public /_espra/health is probed (and the rules evaluated), like an off-site monitor',
    parse: durationIn(100, 3_600_000),
  }),
  option({
    key: 'probeTimeout', flag: '--probe-timeout <duration>', env: 'ESPRA_PROBE_TIMEOUT', defaultText: '2s',
    doc: 'admin: a probe not answered within this failed; at most --probe-interval',
    parse: durationIn(50, 60_000),
  }),
  option({
    key: 'probeHistory', flag: '--probe-history <n>', env: 'ESPRA_PROBE_HISTORY', defaultText: '30',
    doc: 'admin: probe results (time, status, latency, error) kept per node',
    parse: integer(1, 500),
  }),
  option({
    key: 'alertDownAfter', flag: '--alert-down-after <n>', env: 'ESPRA_ALERT_DOWN_AFTER', defaultText: '3',
    doc: 'admin: consecutive failed probes that make a node down (a node the seed evicted or lost is down at once)',
    parse: integer(1, 100),
  }),
  option({
    key: 'alertGroupWindow', flag: '--alert-group-window <duration>', env: 'ESPRA_ALERT_GROUP_WINDOW', defaultText: '10s',
    doc: 'admin: a new incident waits this long for others of the same rule; two or more make one grouped alert listing the nodes (0: never grouped)',
    parse: durationIn(0, 600_000),
  }),
  option({
    key: 'alertFlapHalfLife', flag: '--alert-flap-half-life <duration>', env: 'ESPRA_ALERT_FLAP_HALF_LIFE', defaultText: '2m',
    doc: 'admin: half-life of the flap penalty (1 point per change of a condition); an incident resolves only once its penalty is under 1.5, so a flapping node stays one open alert',
    parse: durationIn(100, 24 * 3_600_000),
  }),
  option({
    key: 'alertMaxRss', flag: '--alert-max-rss <size>', env: 'ESPRA_ALERT_MAX_RSS', defaultText: '3GB',
    doc: 'admin: a node whose RSS (parent and children, from its heartbeats) passes this alerts (0: off)',
    parse: parseSize,
  }),
  option({
    key: 'alertMaxLag', flag: '--alert-max-lag <duration>', env: 'ESPRA_ALERT_MAX_LAG', defaultText: '500ms',
    doc: 'admin: a node whose worst child event-loop lag (from its heartbeats) passes this alerts (0: off)',
    parse: durationIn(0, 600_000),
  }),
  option({
    key: 'alertDeadLetters', flag: '--alert-dead-letters <n>', env: 'ESPRA_ALERT_DEAD_LETTERS', defaultText: '1',
    doc: 'admin: the task queue alerts from this many dead letters (0: off)',
    parse: count(1_000_000_000),
  }),
  option({
    key: 'alertTaskBacklog', flag: '--alert-task-backlog <n>', env: 'ESPRA_ALERT_TASK_BACKLOG', defaultText: '10000',
    doc: 'admin: the task queue alerts when this many tasks are ready, or when the ready count grew at each of the last 6 probe rounds (0: off)',
    parse: count(1_000_000_000),
  }),
  option({
    key: 'alertPendingUploads', flag: '--alert-pending-uploads <n>', env: 'ESPRA_ALERT_PENDING_UPLOADS', defaultText: '100',
    doc: 'admin: a fileserver alerts when it holds this many uploads not yet in the blob store (0: off)',
    parse: count(1_000_000_000),
  }),
  option({
    key: 'alertBuildDeadline', flag: '--alert-build-deadline <duration>', env: 'ESPRA_ALERT_BUILD_DEADLINE', defaultText: '10m',
    doc: 'admin: a build still staging (or under a canary) this long after its push alerts; a refused build alerts at once',
    parse: durationIn(1000, 24 * 3_600_000),
  }),
  option({
    key: 'alertLeaderQuiet', flag: '--alert-leader-quiet <duration>', env: 'ESPRA_ALERT_LEADER_QUIET', defaultText: '2m',
    doc: 'admin: seeds on PostgreSQL: a change of the seeds\' leader opens one seed-leader alert, which resolves by itself once no further change came for this long (never with one embedded seed)',
    details: "admin: seeds on PostgreSQL: a change of the seeds' leader opens one `seed-leader` alert, which resolves by itself once no further change came for this long (never with one embedded seed) ([alerts](alerts.md))",
    parse: durationIn(1000, 24 * 3_600_000),
  }),
  option({
    key: 'alertWebhook', flag: '--alert-webhook <urls>', env: 'ESPRA_ALERT_WEBHOOK', defaultText: '(none)',
    doc: 'admin: URLs every alert notification is POSTed to, comma-separated (a JSON array in a config file)',
    default: constant([]), parse: webhookList,
  }),
  option({
    key: 'alertWebhookSecretFile', flag: '--alert-webhook-secret-file <file>', env: 'ESPRA_ALERT_WEBHOOK_SECRET_FILE', defaultText: '(none: unsigned)',
    doc: 'admin: file holding the key (16 characters or more) webhook bodies are signed with: X-Espra-Signature: sha256=<hex HMAC-SHA256 of "<X-Espra-Timestamp>.<body>">',
    details: 'admin: file holding the key (16 characters or more) webhook bodies are signed with: `X-Espra-Signature: sha256=<hex HMAC-SHA256 of "<X-Espra-Timestamp>.<body>">`, with the time in `X-Espra-Timestamp`; read at start, a missing or short key exits 2',
    default: constant(null), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a file path')(raw)),
  }),
  option({
    key: 'alertWebhookFormat', flag: '--alert-webhook-format <format>', env: 'ESPRA_ALERT_WEBHOOK_FORMAT', defaultText: 'json',
    doc: `admin: webhook body: json ({event, epoch, alert}) or slack ({text}, for Slack-compatible incoming webhooks)`,
    parse: oneOf(WEBHOOK_FORMATS),
  }),
  option({
    key: 'alertEmail', flag: '--alert-email <addresses>', env: 'ESPRA_ALERT_EMAIL', defaultText: '(none)',
    doc: 'admin: addresses every alert notification is mailed to, comma-separated, through the cluster\'s outbound mail queue (needs a mail node)',
    default: constant([]), parse: emailList,
  }),
  option({
    key: 'alertEmailFrom', flag: '--alert-email-from <address>', env: 'ESPRA_ALERT_EMAIL_FROM', defaultText: 'espra-alerts@localhost',
    doc: 'admin: the From address of alert mail',
    parse: (raw) => {
      const list = emailList(raw)
      if (list.length !== 1) throw new InvalidValue('must be one email address')
      return list[0]!
    },
  }),
] as const

export const ALERT_AREA: OptionArea<typeof ALERT_OPTIONS> = { heading: 'Alerts (admin node)', options: ALERT_OPTIONS }

/** Smallest webhook signing key accepted, in characters. */
export const MIN_WEBHOOK_SECRET = 16

/** Reads the webhook signing key; throws `ESPRA_ERR_CONFIG_INVALID` naming the option. */
export function readWebhookSecret(file: string): string {
  let secret: string
  try {
    secret = readFileSync(file, 'utf8').trim()
  } catch (err) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--alert-webhook-secret-file', reason: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
  }
  if (secret.length < MIN_WEBHOOK_SECRET) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--alert-webhook-secret-file', reason: `the key in ${file} must be at least ${MIN_WEBHOOK_SECRET} characters` })
  }
  return secret
}

/** Checks the alert options together once every option is resolved (admin nodes only). */
export function checkAlerts(config: Record<string, unknown>): void {
  if (config['role'] !== 'admin') return
  if (Number(config['probeTimeout']) > Number(config['probeInterval'])) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--probe-timeout', reason: `must be at most --probe-interval (${String(config['probeInterval'])}ms) (got ${String(config['probeTimeout'])}ms)` })
  }
  const file = config['alertWebhookSecretFile']
  if (typeof file === 'string') readWebhookSecret(file)
}
