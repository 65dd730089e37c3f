/**
 * Where an outbound message lives while it is delivered, and how it gets
 * there durably. `enqueueOutbound` resolves only once all of this is
 * written, in this order:
 *
 * 1. the raw bytes: a datastore record `raw/<id>` (kind `mailOutbound`) when
 *    they fit one ({@link INLINE_RAW_BYTES}), else the blob store under
 *    `mail/out/<day>/<id>.eml`;
 * 2. the message record `out/<id>`: sender, per-recipient-domain state
 *    (pending, delivered and failed recipients, attempts, next attempt, the
 *    generation of its current task) and the event timeline;
 * 3. one task per recipient domain on the outbound queue (`mailq.*`,
 *    payload `{id, domain, gen}`), which the mail nodes lease.
 *
 * A failure on the way removes what was written (best effort: a record with
 * no task is never delivered, and a task with no record is dropped by the
 * mail node) and rejects `ESPRA_ERR_MAIL_NOT_DURABLE_OUT`.
 *
 * The record is updated by several deliveries at once (one per domain):
 * every write is a compare-and-set on its version `v` ({@link updateOutRecord}).
 */
import { randomBytes } from 'node:crypto'
import { createError, EspraError } from '../core/errors.js'
import type { BlobStore } from '../storage/blob-store.js'
import type { Datastore, DatastoreValue } from '../storage/datastore.js'
import type { TaskQueue } from '../tasks/queue.js'
import { newTask } from '../tasks/task.js'
import { newOutId, OUT_TASK_NAME } from './outbound.js'

/** Raw messages up to this size are kept in the datastore (the record limit is 64 KB). */
export const INLINE_RAW_BYTES = 48 * 1024
/** Events kept on a record; older ones are counted in `eventsDropped`. */
export const MAX_EVENTS = 60
/** A task that keeps losing its lease (its mail node dying mid-delivery) gives up after this many. */
export const OUT_TASK_ATTEMPTS = 20
const MAX_DETAIL_CHARS = 400

export type OutEventType = 'queued' | 'deferred' | 'delivered' | 'bounced' | 'suppressed' | 'delay-warned' | 'held' | 'released' | 'retried' | 'dropped'

export interface OutEvent {
  readonly at: number
  readonly type: OutEventType
  readonly domain?: string
  readonly rcpts?: string[]
  /** The remote answer, the reason, or what an operator did. */
  readonly detail?: string
  /** deferred: when the next attempt is due (ms). */
  readonly next?: number
}

export interface DomainState {
  /** Recipients not delivered yet and not failed. */
  pending: string[]
  delivered: string[]
  /** Bounced or suppressed. */
  failed: string[]
  /** `queued` (first attempt due), `deferred` (a temporary failure; `next` due), `done` (nothing pending). */
  state: 'queued' | 'deferred' | 'done'
  attempts: number
  next: number | null
  /** The token of the one task that may deliver this domain now. */
  gen: string
  /** Tokens it had before (the newest 20): their tasks are stale and dropped. A task with a token in neither is not named yet (see the worker). */
  retired: string[]
  /** A delay notice was sent for this domain. */
  warned: boolean
  last: string | null
}

export interface OutRecord {
  id: string
  /** Version: bumped by every write (compare-and-set). */
  v: number
  at: number
  /** Envelope sender; '' is the null sender (bounces and delay notices). */
  from: string
  messageId: string
  subject: string
  size: number
  raw: { store: 'ds' } | { store: 'blob'; key: string }
  /** `message` (sendMail, admin mail send), `bounce` or `delay` (notices we generated). */
  kind: 'message' | 'bounce' | 'delay'
  held: boolean
  dropped: boolean
  domains: Record<string, DomainState>
  events: OutEvent[]
  eventsDropped: number
}

export interface OutboundDeps {
  readonly datastore: Datastore
  readonly queue: TaskQueue
  /** Needed for messages over {@link INLINE_RAW_BYTES}; null where there is none (the admin CLI). */
  readonly blobs: BlobStore | null
  /** Told the `queued` event once the message is durable (the app's handleMailEvent); none for our own notices. */
  readonly onQueued?: (record: OutRecord, events: readonly OutEvent[]) => Promise<void>
}

export const outKey = (id: string): string => `out/${id}`
export const rawKey = (id: string): string => `raw/${id}`
const blobKey = (id: string, at: number): string => `mail/out/${new Date(at).toISOString().slice(0, 10)}/${id}.eml`

/** Where the record's message stands, for `admin mail queue` and `show`. */
export function outStatus(r: OutRecord): 'held' | 'queued' | 'deferred' | 'delivered' | 'failed' | 'dropped' {
  if (r.dropped) return 'dropped'
  if (r.held) return 'held'
  const ds = Object.values(r.domains)
  if (ds.some((d) => d.state === 'deferred')) return 'deferred'
  if (ds.some((d) => d.state === 'queued')) return 'queued'
  return ds.some((d) => d.failed.length > 0) ? 'failed' : 'delivered'
}

/** Appends an event, keeping the newest {@link MAX_EVENTS}. */
export function addEvent(r: OutRecord, e: OutEvent): void {
  r.events.push(e.detail !== undefined ? { ...e, detail: e.detail.slice(0, MAX_DETAIL_CHARS) } : e)
  const over = r.events.length - MAX_EVENTS
  if (over > 0) {
    r.events.splice(0, over)
    r.eventsDropped += over
  }
}

const notDurable = (id: string, err: unknown): EspraError =>
  createError('ESPRA_ERR_MAIL_NOT_DURABLE_OUT', { id, reason: (err as Error)?.message ?? String(err), cause: (err as { code?: string })?.code ?? null })

export interface NewOutbound {
  readonly from: string
  readonly rcptsByDomain: ReadonlyMap<string, readonly string[]>
  readonly raw: Buffer
  readonly subject: string
  readonly messageId: string
  readonly kind: OutRecord['kind']
  /** Use this id (it is already in the raw message's Message-ID). */
  readonly id?: string
}

export async function enqueueOutbound(deps: OutboundDeps, msg: NewOutbound): Promise<string> {
  const id = msg.id ?? newOutId()
  const at = Date.now()
  let raw: OutRecord['raw']
  if (msg.raw.length <= INLINE_RAW_BYTES) raw = { store: 'ds' }
  else if (deps.blobs !== null) raw = { store: 'blob', key: blobKey(id, at) }
  else throw createError('ESPRA_ERR_MAIL_TOO_LARGE', { limit: `${INLINE_RAW_BYTES} bytes without the blob store (admin mail send)`, reason: `it has ${msg.raw.length}; send larger mail with ctx.sendMail`, size: msg.raw.length, max: INLINE_RAW_BYTES })
  const domains: Record<string, DomainState> = {}
  for (const [domain, rcpts] of msg.rcptsByDomain) {
    domains[domain] = { pending: [...rcpts], delivered: [], failed: [], state: 'queued', attempts: 0, next: at, gen: newGen(), retired: [], warned: false, last: null }
  }
  const record: OutRecord = {
    id, v: 1, at, from: msg.from, messageId: msg.messageId, subject: msg.subject.slice(0, 200), size: msg.raw.length, raw, kind: msg.kind,
    held: false, dropped: false, domains, events: [], eventsDropped: 0,
  }
  addEvent(record, { at, type: 'queued', rcpts: [...msg.rcptsByDomain.values()].flat(), detail: `${msg.raw.length} bytes, ${msg.rcptsByDomain.size} domain(s)` })
  const { datastore, queue } = deps
  try {
    if (raw.store === 'ds') await datastore.put('mailOutbound', rawKey(id), { bytes: new Uint8Array(msg.raw.buffer, msg.raw.byteOffset, msg.raw.length) })
    else await deps.blobs!.put(raw.key, msg.raw, { contentType: 'message/rfc822' })
    await datastore.put('mailOutbound', outKey(id), record as unknown as DatastoreValue)
    for (const [domain, d] of Object.entries(domains)) await queue.enqueue(outTask(id, domain, d.gen))
  } catch (err) {
    await Promise.allSettled([
      datastore.delete('mailOutbound', outKey(id)),
      raw.store === 'ds' ? datastore.delete('mailOutbound', rawKey(id)) : deps.blobs!.delete(raw.key),
    ])
    throw notDurable(id, err)
  }
  await deps.onQueued?.(record, record.events)
  return id
}

/** A fresh task token: never equal to an earlier one. */
export const newGen = (): string => randomBytes(6).toString('hex')

/** Names `gen` as the domain's task token, retiring the one it had. */
export function setGen(d: DomainState, gen: string): void {
  if (d.gen === gen) return
  d.retired = [...(d.retired ?? []), d.gen].slice(-20)
  d.gen = gen
}

/** The task that delivers `domain` of message `id` as generation `gen`, after `delay` ms. */
export function outTask(id: string, domain: string, gen: string, delay = 0) {
  return newTask(OUT_TASK_NAME, { id, domain, gen }, { attempts: OUT_TASK_ATTEMPTS, delay: Math.max(0, Math.min(Math.round(delay), 30 * 24 * 3_600_000)) })
}

export async function readOutRecord(datastore: Datastore, id: string): Promise<OutRecord | null> {
  return (await datastore.get('mailOutbound', outKey(id))) as unknown as OutRecord | null
}

/**
 * Applies `change` to the current record and writes it if nobody wrote in
 * between (else reads again and re-applies). `change` returns false to write
 * nothing. Resolves with the record written (or left), null when there is none.
 */
export async function updateOutRecord(datastore: Datastore, id: string, change: (r: OutRecord) => boolean): Promise<OutRecord | null> {
  for (let i = 0; i < 50; i++) {
    const r = await readOutRecord(datastore, id)
    if (r === null) return null
    const v = r.v
    if (!change(r)) return r
    r.v = v + 1
    if (await datastore.putIf('mailOutbound', outKey(id), r as unknown as DatastoreValue, { v })) return r
  }
  throw createError('ESPRA_ERR_MAIL_NOT_DURABLE_OUT', { id, reason: 'its record kept changing under 50 writes' })
}

/** The raw bytes of a message, or null when they are gone. */
export async function readOutRaw(deps: Pick<OutboundDeps, 'datastore' | 'blobs'>, r: OutRecord): Promise<Buffer | null> {
  if (r.raw.store === 'ds') {
    const v = await deps.datastore.get('mailOutbound', rawKey(r.id))
    const bytes = v?.['bytes']
    return bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : null
  }
  if (deps.blobs === null) return null
  const object = await deps.blobs.get(r.raw.key)
  if (object === null) return null
  const chunks: Buffer[] = []
  for await (const c of object.body) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}
