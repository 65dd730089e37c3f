/**
 * Planned maintenance, the one implementation every role uses
 * (docs/operations.md, "Planned maintenance"): the rules for a maintenance
 * request (the seed checks every `maintenance.set` with them, the admin CLI
 * checks its flags with them before it connects), the shape of the state the
 * seed pushes, and the compiled form a node answers with: which requests it
 * applies to (host, client address, the node's own clock) and the 503 it
 * answers, rendered once per state change, never per request.
 *
 * The expiry is mandatory and bounded ({@link MAX_MAINTENANCE_MS}): a
 * forgotten maintenance ends by itself, on the seed and on every node, even
 * one cut off from the seed.
 */
import { checkCidr, createTrustedProxies } from '../core/client-address.js'
import { createError, InvalidValue } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { MaintenanceState } from '../core/node-state.js'
import { hostProblem, normalizeHost, requestHost } from '../vhosts/vhost.js'

/** The longest maintenance that may be set: 7 days. Longer is refused, never cut short silently. */
export const MAX_MAINTENANCE_MS = 7 * 24 * 3_600_000
/** The shortest: 1 s, so a time that is about to pass is refused as a mistake rather than flickering on and off. */
export const MIN_MAINTENANCE_MS = 1000
export const MAX_MESSAGE_CHARS = 1000
export const MAX_HOSTS = 100
export const MAX_ALLOW = 100
/**
 * Retry-After is the time left, at most this (5 min): `off` may end the
 * maintenance early, and a client told to wait 7 days would stay away long
 * after service is back.
 */
export const MAX_RETRY_AFTER_S = 300
export const DEFAULT_MESSAGE = 'This service is down for planned maintenance.'
/** The code of the JSON answer (and of the error table entry, lib/core/errors.ts). */
export const MAINTENANCE_CODE = 'ESPRA_ERR_MAINTENANCE'

/** What `maintenance.set` asks for, checked. */
export interface MaintenanceRequest {
  readonly message: string
  readonly until: number
  readonly hosts: readonly string[] | null
  readonly allow: readonly string[]
}

const bad = (field: string, problem: string) =>
  createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: problem })

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v)

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.000Z$/, 'Z')

/** Why `message` cannot be shown, or null: text of 1 to 1,000 characters, no control characters but newlines and tabs. */
export function messageProblem(message: unknown): string | null {
  if (typeof message !== 'string' || message.trim() === '') return 'must be non-empty text'
  if (message.length > MAX_MESSAGE_CHARS) return `must be at most ${MAX_MESSAGE_CHARS} characters (got ${message.length})`
  if (/[\x00-\x08\x0b-\x1f\x7f]/.test(message)) return 'must not hold control characters (newlines and tabs are fine)'
  return null
}

/** Why `until` (ms since the epoch) cannot end a maintenance starting `now`, or null. */
export function untilProblem(until: unknown, now: number): string | null {
  if (typeof until !== 'number' || !Number.isSafeInteger(until)) return 'must be a time in ms since the epoch'
  if (until <= now) return `is in the past (${iso(until)}; now is ${iso(now)})`
  if (until - now < MIN_MAINTENANCE_MS) return `must be at least ${MIN_MAINTENANCE_MS / 1000} s from now`
  if (until - now > MAX_MAINTENANCE_MS) return `is more than 7 days away (${iso(until)}): the longest maintenance is 7 days; set it again later to extend it`
  return null
}

const DURATION = /^(\d+)(s|m|h|d)$/
const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
/** ISO-8601 date and time with seconds optional and a zone required (a time without one means different things on different machines). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/

/**
 * `--until`: a duration from now (`90s`, `90m`, `2h`, `1d`) or an ISO-8601
 * time with a zone (`2026-12-03T06:00Z`, `2026-12-03T07:00:00+01:00`).
 * Returns `{forMs}` for a duration (the seed adds it to its own clock, so a
 * skewed admin machine cannot shift it) or `{until}`; throws an `InvalidValue`.
 */
export function parseUntilArg(raw: string, now: number): { forMs: number } | { until: number } {
  const text = raw.trim()
  const d = DURATION.exec(text)
  if (d) {
    const forMs = Number(d[1]) * DURATION_UNITS[d[2]!]!
    if (forMs < MIN_MAINTENANCE_MS) throw new InvalidValue(`${JSON.stringify(raw)} is too short: a maintenance lasts at least ${MIN_MAINTENANCE_MS / 1000} s`)
    const problem = untilProblem(now + forMs, now)
    if (problem !== null) throw new InvalidValue(`${JSON.stringify(raw)} ${problem}`)
    return { forMs }
  }
  if (!ISO_TIME.test(text)) {
    if (/^\d{4}-\d{2}-\d{2}/.test(text)) throw new InvalidValue(`${JSON.stringify(raw)} needs a date, a time and a zone, e.g. 2026-12-03T06:00Z or 2026-12-03T07:00+01:00`)
    throw new InvalidValue(`${JSON.stringify(raw)} must be a duration (90s, 90m, 2h, 1d) or an ISO-8601 time with a zone (2026-12-03T06:00Z)`)
  }
  const until = Date.parse(text)
  if (Number.isNaN(until)) throw new InvalidValue(`${JSON.stringify(raw)} is not a real date and time`)
  const problem = untilProblem(until, now)
  if (problem !== null) throw new InvalidValue(`${JSON.stringify(raw)} ${problem}`)
  return { until }
}

/** Checks a list of host names (lower-cased, trailing dot dropped); throws an `InvalidValue` naming the bad one. */
export function checkHosts(hosts: readonly unknown[]): string[] {
  if (hosts.length === 0) throw new InvalidValue('must name at least one host (leave it out for every host)')
  if (hosts.length > MAX_HOSTS) throw new InvalidValue(`must name at most ${MAX_HOSTS} hosts (got ${hosts.length})`)
  return [...new Set(hosts.map((h) => {
    const host = typeof h === 'string' ? normalizeHost(h.trim()) : h
    const problem = hostProblem(host)
    if (problem !== null) throw new InvalidValue(`${JSON.stringify(h)}: ${problem}`)
    return host as string
  }))]
}

/** Checks a list of client addresses or CIDR blocks (IPv4 or IPv6); throws an `InvalidValue` naming the bad one. */
export function checkAllow(allow: readonly unknown[]): string[] {
  if (allow.length > MAX_ALLOW) throw new InvalidValue(`must name at most ${MAX_ALLOW} addresses or blocks (got ${allow.length})`)
  return allow.map((a) => {
    if (typeof a !== 'string') throw new InvalidValue(`${JSON.stringify(a)}: must be an IP address or a CIDR block`)
    return checkCidr(a.trim())
  })
}

/**
 * Checks a `maintenance.set` body at `now`: `{message?, until | forMs, hosts?, allow?}`.
 * Throws `ESPRA_ERR_META_BAD_REQUEST` with `details.field` naming the first bad field.
 */
export function checkMaintenanceRequest(body: unknown, now: number): MaintenanceRequest {
  if (!isMap(body)) throw bad('body', 'must be a map')
  const message = body['message'] ?? DEFAULT_MESSAGE
  const mp = messageProblem(message)
  if (mp !== null) throw bad('message', mp)
  const { until: rawUntil, forMs } = body
  if (rawUntil === undefined && forMs === undefined) throw bad('until', 'is required (or forMs): a maintenance always ends by itself')
  if (rawUntil !== undefined && forMs !== undefined) throw bad('until', 'and forMs cannot both be given')
  let until: number
  if (forMs !== undefined) {
    if (typeof forMs !== 'number' || !Number.isSafeInteger(forMs)) throw bad('forMs', 'must be a whole number of ms')
    until = now + forMs
    const up = untilProblem(until, now)
    if (up !== null) throw bad('forMs', `ends a maintenance that ${up}`)
  } else {
    const up = untilProblem(rawUntil, now)
    if (up !== null) throw bad('until', up)
    until = rawUntil as number
  }
  let hosts: string[] | null = null
  if (body['hosts'] !== undefined && body['hosts'] !== null) {
    if (!Array.isArray(body['hosts'])) throw bad('hosts', 'must be a list of host names')
    try {
      hosts = checkHosts(body['hosts'])
    } catch (problem) {
      throw bad('hosts', String(problem))
    }
  }
  let allow: string[] = []
  if (body['allow'] !== undefined && body['allow'] !== null) {
    if (!Array.isArray(body['allow'])) throw bad('allow', 'must be a list of IP addresses or CIDR blocks')
    try {
      allow = checkAllow(body['allow'])
    } catch (problem) {
      throw bad('allow', String(problem))
    }
  }
  return { message: message as string, until, hosts, allow }
}

/**
 * A pushed or stored state read back: the record, or null when it is not one
 * (a node ignores a malformed push; the seed drops a malformed record).
 */
export function parseMaintenanceState(value: unknown): MaintenanceState | null {
  if (!isMap(value)) return null
  const { message, until, hosts, allow, at } = value
  if (messageProblem(message) !== null || typeof until !== 'number' || typeof at !== 'number') return null
  if (hosts !== null && !(Array.isArray(hosts) && hosts.every((h) => typeof h === 'string' && hostProblem(h) === null))) return null
  if (!Array.isArray(allow)) return null
  try {
    checkAllow(allow)
  } catch {
    return null
  }
  return Object.freeze({ message: message as string, until, hosts: hosts === null ? null : Object.freeze([...hosts as string[]]), allow: Object.freeze([...allow as string[]]), at })
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

/** The page: the message (newlines kept), when it ends; no script, no outside resources. */
export function renderMaintenancePage(state: MaintenanceState): string {
  const until = iso(state.until)
  const shown = until.replace(/\.\d+Z$/, 'Z').replace('T', ' ').replace('Z', ' UTC')
  const text = escapeHtml(state.message).replace(/\r?\n/g, '<br>')
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">' +
    '<title>Down for maintenance</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}</style></head>' +
    `<body><h1>Down for maintenance</h1><p>${text}</p><p>Expected back by <time datetime="${until}">${shown}</time>.</p></body></html>\n`
}

/** Whether an Accept header prefers JSON: it names `application/json` (or a `+json` type) before any `text/html`. */
export function wantsJson(accept: string | undefined): boolean {
  if (accept === undefined || accept === '') return false
  const lower = accept.toLowerCase()
  let json = lower.indexOf('application/json')
  const suffix = lower.indexOf('+json')
  if (json < 0 || (suffix >= 0 && suffix < json)) json = suffix
  if (json < 0) return false
  const html = lower.indexOf('text/html')
  return html < 0 || json < html
}

/** A body and its headers, ready for any server. */
export interface MaintenanceBody {
  readonly contentType: string
  readonly bytes: Buffer
}

/** The compiled state a node answers with; made once per pushed state. */
export interface Maintenance {
  readonly state: MaintenanceState
  readonly html: MaintenanceBody
  readonly json: MaintenanceBody
  /** Whether a request for `hostHeader` (the Host header as sent) from `client` is answered with the maintenance page at `now`. */
  applies(hostHeader: string | undefined, client: string, now: number): boolean
  /** Seconds for Retry-After: the time left, 1 to {@link MAX_RETRY_AFTER_S}. */
  retryAfter(now: number): number
  /** A whole HTTP/1.1 response (the proxy writes it as is); `headOnly` for HEAD. */
  response(json: boolean, headOnly: boolean, close: boolean, now: number): Buffer
}

/** Compiles a state: host set, allow list and both bodies, once. */
export function compileMaintenance(state: MaintenanceState): Maintenance {
  const hosts = state.hosts === null ? null : new Set(state.hosts)
  const allow = createTrustedProxies(state.allow)
  const html: MaintenanceBody = { contentType: 'text/html; charset=utf-8', bytes: Buffer.from(renderMaintenancePage(state), 'utf8') }
  const json: MaintenanceBody = {
    contentType: 'application/json',
    bytes: Buffer.from(JSON.stringify({ code: MAINTENANCE_CODE, message: state.message, until: iso(state.until) }), 'utf8'),
  }
  const heads = new Map<MaintenanceBody, string>([html, json].map((b) => [b,
    `HTTP/1.1 503 Service Unavailable\r\nContent-Type: ${b.contentType}\r\nContent-Length: ${b.bytes.length}\r\nCache-Control: no-store\r\nRetry-After: `]))
  const retryAfter = (now: number): number => Math.max(1, Math.min(MAX_RETRY_AFTER_S, Math.ceil((state.until - now) / 1000)))
  return {
    state, html, json, retryAfter,
    applies(hostHeader, client, now) {
      // Over at `until` by this node's clock, whatever the seed says (or cannot say while unreachable).
      if (now >= state.until) return false
      if (hosts !== null) {
        const host = hostHeader === undefined ? null : requestHost(hostHeader)
        if (host === null || !hosts.has(host)) return false
      }
      return allow.none || !allow.has(client)
    },
    response(wantsJsonBody, headOnly, close, now) {
      const body = wantsJsonBody ? json : html
      const head = `${heads.get(body)!}${retryAfter(now)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
      return headOnly ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), body.bytes])
    },
  }
}

/**
 * The compiled form of whatever state a node holds now, compiled again only
 * when the state object changes (the parent replaces it on every push): call
 * it per request with the state just read.
 */
export function createMaintenanceCache(): (state: MaintenanceState | null | undefined) => Maintenance | null {
  let last: MaintenanceState | null = null
  let compiled: Maintenance | null = null
  return (state) => {
    if (state === null || state === undefined) return null
    if (state !== last) {
      last = state
      compiled = compileMaintenance(state)
    }
    return compiled
  }
}

const sameState = (a: MaintenanceState, b: MaintenanceState): boolean =>
  a.at === b.at && a.until === b.until && a.message === b.message && a.hosts?.join() === b.hosts?.join() && a.allow.join() === b.allow.join()

/**
 * A node parent takes a `maintenance` push (`{state}`): the state to hold
 * from now on. The same state pushed again (every re-register) keeps the
 * object it had, so children do not hear a change; a malformed push is
 * logged and changes nothing.
 */
export function maintenancePush(body: unknown, previous: MaintenanceState | null, log: Logger): MaintenanceState | null {
  const raw = isMap(body) ? body['state'] : undefined
  if (raw === null) {
    if (previous !== null) log.info('maintenance over')
    return null
  }
  const state = parseMaintenanceState(raw)
  if (state === null) {
    log.warn({ body }, 'malformed maintenance push ignored')
    return previous
  }
  if (previous !== null && sameState(previous, state)) return previous
  log.info({ until: iso(state.until), hosts: state.hosts, allow: state.allow }, 'maintenance on: answering 503 for the hosts it names')
  return state
}
