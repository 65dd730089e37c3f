/**
 * Alerts, silences, sink states and probe histories in the datastore
 * (docs/alerts.md, "Records"). The admin node's alert engine writes them;
 * these functions are also what the admin HTTP API calls:
 *
 * - `listAlerts`, `getAlert`: kind `alerts`, keys `a/<id>` (newest first) and
 *   the open index `open/<id>`.
 * - `addSilence`, `removeSilence`, `listSilences`: kind `alertSilences`, key
 *   the silence id. The engine re-reads them every {@link SILENCE_POLL_MS}.
 * - `listSinkStatuses`: kind `alerts`, keys `status/sink/<name>`.
 * - `listProbeHistories`: kind `alerts`, keys `status/probe/<node id>`.
 */
import { randomBytes } from 'node:crypto'
import { createError } from '../core/errors.js'
import { listAll, type Datastore, type DatastoreValue } from '../storage/datastore.js'
import { NODE_ID } from '../transport/meta-shapes.js'
import { isRule, MAX_SILENCE_MS, RULES, type AlertRecord, type AlertState, type RuleName, type Silence } from './alert.js'

/** How often the engine re-reads the silences: one added through the API takes effect within this. */
export const SILENCE_POLL_MS = 2000
export const DEFAULT_ALERT_LIMIT = 50
export const MAX_ALERT_LIMIT = 1000
/** Pages of 1,000 records one `listAlerts` call reads at most when filtering resolved alerts. */
const MAX_SCAN_PAGES = 20

/** An alert's id: inverted time (newest first in key order) and a random tail. */
export const ALERT_ID = /^\d{16}-[0-9a-f]{6}$/
export const SILENCE_ID = /^s[0-9a-z]{1,12}[0-9a-f]{8}$/
const alertKey = (id: string) => `a/${id}`
const openKey = (id: string) => `open/${id}`
const asValue = (v: unknown) => v as DatastoreValue

/** Writes an alert and keeps the open index in step. */
export async function saveAlert(datastore: Datastore, alert: AlertRecord): Promise<void> {
  await datastore.put('alerts', alertKey(alert.id), asValue(alert))
  if (alert.state === 'open') await datastore.put('alerts', openKey(alert.id), { id: alert.id })
  else await datastore.delete('alerts', openKey(alert.id))
}

export async function getAlert(datastore: Datastore, id: string): Promise<AlertRecord | null> {
  if (!ALERT_ID.test(id)) throw createError('ESPRA_ERR_ALERT_INVALID', { field: 'id', reason: `must look like 9998235012345678-0a1b2c (got ${JSON.stringify(id)})` })
  return (await datastore.get('alerts', alertKey(id))) as unknown as AlertRecord | null
}

/** The alerts a previous run left open (the engine restores them at start). */
export async function loadOpenAlerts(datastore: Datastore): Promise<AlertRecord[]> {
  const out: AlertRecord[] = []
  for await (const entry of listAll(datastore, 'alerts', 'open/')) {
    const alert = (await datastore.get('alerts', alertKey(String(entry.value['id'])))) as unknown as AlertRecord | null
    if (alert !== null && alert.state === 'open') out.push(alert)
  }
  return out
}

export interface ListAlertsQuery {
  /** Only open or only resolved alerts; absent: both. */
  readonly state?: AlertState
  /** At most this many (default 50, 1 to 1,000). */
  readonly limit?: number
  /** Only alerts older than this id (the `next` of the previous page). */
  readonly before?: string
}

export interface AlertPage {
  /** Newest first. */
  readonly alerts: AlertRecord[]
  /** Pass as `before` for the next page; null when there is no more. */
  readonly next: string | null
}

/** Alerts newest first, a page at a time: what `GET /api/alerts` answers. */
export async function listAlerts(datastore: Datastore, query: ListAlertsQuery = {}): Promise<AlertPage> {
  const { state, before } = query
  const limit = query.limit ?? DEFAULT_ALERT_LIMIT
  if (state !== undefined && state !== 'open' && state !== 'resolved') throw createError('ESPRA_ERR_ALERT_INVALID', { field: 'state', reason: 'must be open or resolved' })
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ALERT_LIMIT) throw createError('ESPRA_ERR_ALERT_INVALID', { field: 'limit', reason: `must be an integer from 1 to ${MAX_ALERT_LIMIT}` })
  if (before !== undefined && !ALERT_ID.test(before)) throw createError('ESPRA_ERR_ALERT_INVALID', { field: 'before', reason: 'must be an alert id (the next of the previous page)' })
  const alerts: AlertRecord[] = []
  if (state === 'open') {
    const page = await datastore.list('alerts', { prefix: 'open/', limit, ...(before !== undefined ? { after: openKey(before) } : {}) })
    for (const entry of page.entries) {
      const alert = await getAlert(datastore, String(entry.value['id']))
      if (alert !== null) alerts.push(alert)
    }
    return { alerts, next: page.next === null ? null : page.next.slice('open/'.length) }
  }
  let after = before !== undefined ? alertKey(before) : undefined
  for (let pages = 0; pages < MAX_SCAN_PAGES; pages++) {
    const page = await datastore.list('alerts', { prefix: 'a/', limit: state === undefined ? limit - alerts.length : 1000, ...(after !== undefined ? { after } : {}) })
    for (const entry of page.entries) {
      after = entry.key
      const alert = entry.value as unknown as AlertRecord
      if (state !== undefined && alert.state !== state) continue
      alerts.push(alert)
      if (alerts.length === limit) return { alerts, next: alert.id }
    }
    if (page.next === null) return { alerts, next: null }
  }
  // Many open alerts in a row: hand back where the scan stopped; the next call goes on from there.
  return { alerts, next: after === undefined ? null : after.slice('a/'.length) }
}

const silenceInvalid = (field: string, reason: string) => createError('ESPRA_ERR_ALERT_SILENCE_INVALID', { field, reason })

export interface NewSilence {
  /** At least one of rule and node. */
  readonly matcher: { readonly rule?: string | null; readonly node?: string | null }
  /** ms since the epoch: when it stops; after now and at most 30 days ahead (MAX_SILENCE_MS). */
  readonly until: number
  /** Who set it (the API's token name or the operator). */
  readonly by: string
  readonly comment: string
}

/** Checks and stores a silence; the engine honours it within {@link SILENCE_POLL_MS}. */
export async function addSilence(datastore: Datastore, input: NewSilence, now = Date.now()): Promise<Silence> {
  const rule = input.matcher?.rule ?? null
  const node = input.matcher?.node ?? null
  if (rule === null && node === null) throw silenceInvalid('matcher', 'must name a rule, a node or both')
  if (rule !== null && !isRule(rule)) throw silenceInvalid('matcher.rule', `must be one of ${RULES.join(', ')}`)
  if (node !== null && (typeof node !== 'string' || !NODE_ID.test(node))) throw silenceInvalid('matcher.node', 'must be a node id')
  if (typeof input.until !== 'number' || !Number.isFinite(input.until) || input.until <= now) throw silenceInvalid('until', 'must be a time in the future (ms since the epoch)')
  if (input.until - now > MAX_SILENCE_MS) throw silenceInvalid('until', `must be at most ${MAX_SILENCE_MS / 86_400_000} days ahead`)
  if (typeof input.by !== 'string' || input.by.trim() === '' || input.by.length > 200) throw silenceInvalid('by', 'must say who sets it (1 to 200 characters)')
  if (typeof input.comment !== 'string' || input.comment.length > 1000) throw silenceInvalid('comment', 'must be text of at most 1,000 characters')
  const silence: Silence = {
    id: `s${now.toString(36)}${randomBytes(4).toString('hex')}`,
    rule: rule as RuleName | null, node, until: Math.round(input.until), by: input.by.trim(), comment: input.comment, createdAt: now,
  }
  await datastore.put('alertSilences', silence.id, asValue(silence))
  return silence
}

/** Lifts a silence at once (the engine notices within {@link SILENCE_POLL_MS}); `ESPRA_ERR_ALERT_SILENCE_NOT_FOUND` when there is none. */
export async function removeSilence(datastore: Datastore, id: string): Promise<void> {
  if (typeof id !== 'string' || !SILENCE_ID.test(id) || !(await datastore.delete('alertSilences', id))) {
    throw createError('ESPRA_ERR_ALERT_SILENCE_NOT_FOUND', { id })
  }
}

/** Silences in force at `now` (with `expired`: also those past their `until`, until the engine deletes them a day later). */
export async function listSilences(datastore: Datastore, options: { expired?: boolean } = {}, now = Date.now()): Promise<Silence[]> {
  const out: Silence[] = []
  for await (const entry of listAll(datastore, 'alertSilences')) {
    const s = entry.value as unknown as Silence
    if (options.expired === true || s.until > now) out.push(s)
  }
  return out.sort((a, b) => a.until - b.until)
}

/** A sink as the dashboard shows it (kept by the engine, docs/alerts.md "Sinks"). */
export interface SinkStatus {
  /** e.g. `webhook https://hooks.example.com/…` (no credentials, no query) or `email ops@example.com`. */
  name: string
  kind: 'webhook' | 'email'
  /** Notifications waiting (retrying included). */
  pending: number
  sent: number
  /** Given up after every retry, or pushed out of a full queue. */
  dropped: number
  lastSuccessAt: number | null
  lastError: { at: number; message: string } | null
  updatedAt: number
}

const sinkKey = (name: string) => `status/sink/${name}`.slice(0, 500)

export async function saveSinkStatus(datastore: Datastore, status: SinkStatus): Promise<void> {
  await datastore.put('alerts', sinkKey(status.name), asValue(status))
}

/** Every sink's state: what the dashboard and `GET /api/alerts/sinks` show. */
export async function listSinkStatuses(datastore: Datastore): Promise<SinkStatus[]> {
  const out: SinkStatus[] = []
  for await (const entry of listAll(datastore, 'alerts', 'status/sink/')) out.push(entry.value as unknown as SinkStatus)
  return out
}

/** One probe of a node's `/_espra/health`. */
export interface ProbeResult {
  at: number
  /** HTTP status; 0 when there was no answer. */
  status: number
  latencyMs: number
  ok: boolean
  /** The body's `health` word when it had one. */
  health: string | null
  error: string | null
}

/** A node's last probes, oldest first (at most `--probe-history`). */
export interface ProbeHistory {
  node: string
  address: string
  port: number
  results: ProbeResult[]
  /** Failed probes in a row now. */
  failures: number
}

const probeKey = (node: string) => `status/probe/${node}`

export async function saveProbeHistory(datastore: Datastore, history: ProbeHistory): Promise<void> {
  await datastore.put('alerts', probeKey(history.node), asValue(history))
}

export async function deleteProbeHistory(datastore: Datastore, node: string): Promise<void> {
  await datastore.delete('alerts', probeKey(node))
}

/** Probe histories as the admin node last wrote them (after every round), one node or all. */
export async function listProbeHistories(datastore: Datastore, node?: string): Promise<ProbeHistory[]> {
  if (node !== undefined) {
    const one = await datastore.get('alerts', probeKey(node))
    return one === null ? [] : [one as unknown as ProbeHistory]
  }
  const out: ProbeHistory[] = []
  for await (const entry of listAll(datastore, 'alerts', 'status/probe/')) out.push(entry.value as unknown as ProbeHistory)
  return out
}
