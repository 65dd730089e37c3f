/**
 * The `mail.inbound.commit` meta op's shapes and checks (docs/meta-protocol.md,
 * "Inbound mail"): a mail child's group of messages whose raw bytes are
 * durable, recorded, deduplicated and queued by the seed in one round trip.
 * Every entry is checked as strictly as the single `ds.*` and
 * `tasks.enqueue` ops check theirs, and more: the raw key must be the one
 * the message's id and time give, so the op writes nothing but inbound mail.
 */
import { createError, EspraError } from '../core/errors.js'
import { keyProblem, valueProblem } from '../storage/datastore.js'
import { INLINE_INBOUND_BYTES, rawMailKey, type MailEnvelope, type RawMessageRef } from './inbound.js'
import type { HandoffVerification, MailAuthResults } from './inbound-auth.js'
import type { InboundRecord } from './inbound-record.js'

/** Messages in one op at most. */
export const MAX_INBOUND_BATCH = 256
/** The longest dedupe window the op takes (a year). */
export const MAX_DEDUPE_WINDOW_MS = 365 * 24 * 3_600_000
/** Recipients per message at most (`--mail-max-recipients` is 1–250). */
const MAX_RECIPIENTS = 250
/** DNS servers a handoff verification may name. */
const MAX_DNS_SERVERS = 16

/** One message of a group: what its record holds but the task. */
export interface InboundEntry {
  readonly id: string
  readonly raw: RawMessageRef
  readonly envelope: MailEnvelope
  readonly messageId: string | null
  /** ms since the epoch, when the message arrived. */
  readonly at: number
  readonly auth: MailAuthResults | null
  /** Present when the handoff is to verify the message (the mail node did not wait for its results). */
  readonly verify?: HandoffVerification
  /** The raw bytes themselves, when `raw.store` is `ds` (at most {@link INLINE_INBOUND_BYTES}): the seed writes them beside the record. */
  readonly bytes?: Uint8Array
}

export interface InboundBatch {
  readonly windowMs: number
  readonly entries: readonly InboundEntry[]
}

/** Per entry, in order: taken (`duplicate`: a retry of the message `id` names, not handed again) or failed. */
export type InboundResult =
  | { readonly id: string; readonly duplicate: boolean }
  | { readonly error: { readonly code: string; readonly message: string } }

/** A message id: `m`, its time in base 36, 12 hex digits (newMailId, inbound.ts). */
export const MAIL_ID = /^m[0-9a-z]{1,12}[0-9a-f]{12}$/
const SHA256 = /^[0-9a-f]{64}$/
// Text of an envelope field: printable, no control characters (an address, a HELO name, a Message-ID).
const TEXT = /^[^\x00-\x1f\x7f]*$/
const HEADER = /^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$/

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)

function bad(field: string, allowed: string): EspraError {
  return createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: `must be ${allowed}` })
}

function text(v: unknown, field: string, max: number, min = 0): string {
  if (typeof v !== 'string' || !TEXT.test(v) || Buffer.byteLength(v) > max || v.length < min) throw bad(field, `text of ${min} to ${max} bytes without control characters`)
  return v
}

function integer(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `an integer from ${min} to ${max}`)
  return v
}

function checkAuth(v: unknown, field: string): MailAuthResults | null {
  if (v === null || v === undefined) return null
  if (!isMap(v)) throw bad(field, 'null or a map of SPF, DKIM, DMARC and ARC results')
  for (const part of ['spf', 'dkim', 'dmarc', 'arc']) {
    const r = v[part]
    if (!isMap(r) || typeof r['result'] !== 'string') throw bad(`${field}.${part}`, 'a map with a result')
  }
  // A folded header field: CRLF and tabs inside, no other control characters.
  const header = v['header']
  if (typeof header !== 'string' || !HEADER.test(header) || Buffer.byteLength(header) > 4096) throw bad(`${field}.header`, 'a header field value of at most 4096 bytes (folded with CRLF and tabs, no other control characters)')
  return v as unknown as MailAuthResults
}

function checkVerify(v: unknown, field: string): HandoffVerification | undefined {
  if (v === null || v === undefined) return undefined
  if (!isMap(v)) throw bad(field, 'null or a map {timeoutMs, dnsServers, mta}')
  const servers = v['dnsServers']
  if (!Array.isArray(servers) || servers.length > MAX_DNS_SERVERS) throw bad(`${field}.dnsServers`, `a list of at most ${MAX_DNS_SERVERS} DNS server addresses`)
  return {
    // --mail-auth-timeout's range.
    timeoutMs: integer(v['timeoutMs'], `${field}.timeoutMs`, 100, 60_000),
    dnsServers: servers.map((s, i) => text(s, `${field}.dnsServers[${i}]`, 64, 1)),
    mta: text(v['mta'], `${field}.mta`, 253, 1),
  }
}

function checkEntry(v: unknown, field: string, now: number): InboundEntry {
  if (!isMap(v)) throw bad(field, 'a map {id, raw, envelope, messageId, at, auth, verify?}')
  if (typeof v['id'] !== 'string' || !MAIL_ID.test(v['id'])) throw bad(`${field}.id`, 'a message id (m, its time in base 36, 12 hex digits)')
  const id = v['id']
  // Not before 2020, at most a day ahead of the seed's clock.
  const at = integer(v['at'], `${field}.at`, 1_577_836_800_000, now + 86_400_000)
  const raw = v['raw']
  if (!isMap(raw)) throw bad(`${field}.raw`, 'a map {key, size, sha256}')
  if (raw['key'] !== rawMailKey(id, at)) throw bad(`${field}.raw.key`, `the message's own key (${rawMailKey(id, at)})`)
  const size = integer(raw['size'], `${field}.raw.size`, 0, Number.MAX_SAFE_INTEGER)
  if (typeof raw['sha256'] !== 'string' || !SHA256.test(raw['sha256'])) throw bad(`${field}.raw.sha256`, '64 lower-case hex digits')
  const inline = raw['store'] === 'ds'
  if (!inline && raw['store'] !== undefined) throw bad(`${field}.raw.store`, "absent (the blob store) or 'ds' (the bytes ride in the entry)")
  const bytes = v['bytes']
  if (inline && !(bytes instanceof Uint8Array && bytes.length === size && size <= INLINE_INBOUND_BYTES)) throw bad(`${field}.bytes`, `the message's ${size} raw bytes (at most ${INLINE_INBOUND_BYTES}) when raw.store is 'ds'`)
  if (!inline && bytes !== undefined) throw bad(`${field}.bytes`, "absent when raw.store is not 'ds'")
  const env = v['envelope']
  if (!isMap(env)) throw bad(`${field}.envelope`, 'a map {from, to, remoteAddress, helo}')
  const to = env['to']
  if (!Array.isArray(to) || to.length < 1 || to.length > MAX_RECIPIENTS) throw bad(`${field}.envelope.to`, `a list of 1 to ${MAX_RECIPIENTS} addresses`)
  const envelope: MailEnvelope = {
    from: text(env['from'], `${field}.envelope.from`, 320),
    to: to.map((a, i) => text(a, `${field}.envelope.to[${i}]`, 320, 3)),
    remoteAddress: text(env['remoteAddress'], `${field}.envelope.remoteAddress`, 64),
    helo: text(env['helo'], `${field}.envelope.helo`, 1024),
  }
  const messageId = v['messageId'] === null ? null : text(v['messageId'], `${field}.messageId`, 998)
  const auth = checkAuth(v['auth'], `${field}.auth`)
  const verify = checkVerify(v['verify'], `${field}.verify`)
  if (auth !== null && verify !== undefined) throw bad(`${field}.verify`, 'absent when auth is given (the message is verified once)')
  const entry: InboundEntry = { id, at, raw: { key: raw['key'], size, sha256: raw['sha256'], ...(inline ? { store: 'ds' as const } : {}) }, envelope, messageId, auth, ...(verify === undefined ? {} : { verify }) }
  return inline ? { ...entry, bytes: bytes as Uint8Array } : entry
}

/** The record an entry becomes (task null until queued). */
export function inboundRecord(e: InboundEntry, task: string | null = null): InboundRecord {
  const record: InboundRecord = { id: e.id, raw: { ...e.raw }, envelope: { ...e.envelope, to: [...e.envelope.to] }, messageId: e.messageId, at: e.at, auth: e.auth, task }
  return e.verify === undefined ? record : { ...record, verify: { ...e.verify, dnsServers: [...e.verify.dnsServers] } }
}

/** Checks a `mail.inbound.commit` body; throws `ESPRA_ERR_META_BAD_REQUEST` naming the first bad field. */
export function checkInboundBatch(body: unknown, now = Date.now()): InboundBatch {
  if (!isMap(body)) throw bad('body', 'a map {windowMs, entries}')
  const windowMs = integer(body['windowMs'], 'windowMs', 0, MAX_DEDUPE_WINDOW_MS)
  const list = body['entries']
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_INBOUND_BATCH) throw bad('entries', `a list of 1 to ${MAX_INBOUND_BATCH} messages`)
  const ids = new Set<string>()
  const entries = list.map((v, i) => {
    const e = checkEntry(v, `entries[${i}]`, now)
    if (ids.has(e.id)) throw bad(`entries[${i}].id`, 'unique in the batch')
    ids.add(e.id)
    const problem = keyProblem(`in/${e.id}`) ?? valueProblem(inboundRecord(e, 't9999999999999999') as unknown as Record<string, unknown>)
    if (problem) throw bad(`entries[${i}]`, `a message whose record fits: ${problem.field} must be ${problem.allowed}`)
    return e
  })
  return { windowMs, entries }
}
