/**
 * Tasks: what `ctx.enqueue(name, payload, {delay, attempts})` puts on the
 * queue and what `handleTask(task)` gets back. The rules are checked here,
 * once, for every backend and on both sides of every wire (the worker thread
 * that enqueues, the main thread, the seed): a bad value is
 * `ESPRA_ERR_TASK_INVALID` with `details.field` naming it.
 *
 * A payload is encoded to msgpack once, by the producer; the queue stores and
 * carries those bytes and the consumer decodes them for `handleTask`.
 */
import { Packr } from 'msgpackr'
import { createError, EspraError } from '../core/errors.js'

/** A task name: a short token such as `thumbnail` or `mail.digest`. */
export const TASK_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
/** Encoded (msgpack) size of one payload. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
export const MAX_DELAY_MS = 30 * 24 * 3_600_000
export const MAX_ATTEMPTS = 100
export const DEFAULT_ATTEMPTS = 3
/** Nesting depth of a payload (arrays and objects). */
const MAX_DEPTH = 32
/** A failure's message as kept with the task (longer ones are cut). */
export const MAX_ERROR_CHARS = 2000
/** Task ids: `t` and a number that grows with every enqueue on one queue. */
export const TASK_ID = /^t[1-9][0-9]{0,15}$/

// Plain msgpack (no records) so any backend and any language can read it.
const packr = new Packr({ useRecords: false, moreTypes: false })

/** What a producer hands to a queue. */
export interface NewTask {
  readonly name: string
  /** The payload, msgpack-encoded ({@link encodePayload}). */
  readonly payload: Uint8Array
  /** ms before the task may run (0: at once). */
  readonly delay: number
  /** Runs at most this many times (failures and lost leases count). */
  readonly attempts: number
}

/** A task a consumer holds a lease on. `attempt` (1, 2, ...) names the lease: settle and extend quote it. */
export interface LeasedTask {
  readonly id: string
  readonly name: string
  readonly payload: Uint8Array
  readonly attempt: number
  readonly attempts: number
  /** ms since the epoch. */
  readonly enqueuedAt: number
}

export interface LeaseRef {
  readonly id: string
  readonly attempt: number
}

/**
 * The end of one lease: `done` removes the task; `failed` retries it after
 * `retryInMs`, or makes it a dead letter when that was its last attempt;
 * `released` gives it back untouched (the attempt does not count).
 */
export type Settlement =
  | { readonly id: string; readonly attempt: number; readonly result: 'done' }
  | { readonly id: string; readonly attempt: number; readonly result: 'failed'; readonly error: string; readonly retryInMs: number }
  | { readonly id: string; readonly attempt: number; readonly result: 'released' }

export interface TaskCounts {
  /** Waiting to run. */
  readonly ready: number
  /** Waiting for their delay or their next retry. */
  readonly delayed: number
  /** Taken by a consumer (running, or about to). */
  readonly leased: number
  /** Failed every attempt: kept until retried. */
  readonly dead: number
}

/** A dead letter, as `admin tasks --dead` shows it. */
export interface DeadTask {
  readonly id: string
  readonly name: string
  readonly attempts: number
  readonly enqueuedAt: number
  readonly failedAt: number
  readonly error: string
  /** Encoded payload size. */
  readonly payloadBytes: number
}

export interface DeadPage {
  readonly tasks: DeadTask[]
  /** Pass as `after` for the next page; null on the last. */
  readonly next: string | null
}

export function invalid(field: string, allowed: string): EspraError {
  return createError('ESPRA_ERR_TASK_INVALID', { field, allowed })
}

/** The first reason `value` is not a payload (JSON-like values, bytes and Dates), or null. */
function payloadProblem(value: unknown, depth: number): string | null {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'a finite number'
  if (value instanceof Uint8Array || value instanceof Date) return null
  if (typeof value !== 'object') return `JSON-like (got a ${typeof value})`
  if (depth >= MAX_DEPTH) return `nested at most ${MAX_DEPTH} deep`
  if (Array.isArray(value)) {
    for (const v of value) {
      const p = payloadProblem(v, depth + 1)
      if (p) return p
    }
    return null
  }
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== null) return `plain objects, arrays, strings, numbers, booleans, null, bytes or Dates (got a ${(value as object).constructor?.name ?? 'class instance'})`
  for (const v of Object.values(value)) {
    if (v === undefined) continue
    const p = payloadProblem(v, depth + 1)
    if (p) return p
  }
  return null
}

/** Checks and encodes a payload; `undefined` is sent as null. */
export function encodePayload(payload: unknown): Uint8Array {
  const value = payload === undefined ? null : payload
  const problem = payloadProblem(value, 0)
  if (problem) throw invalid('payload', problem)
  const bytes = packr.pack(value)
  if (bytes.length > MAX_PAYLOAD_BYTES) throw invalid('payload', `at most ${MAX_PAYLOAD_BYTES} bytes encoded as msgpack (got ${bytes.length})`)
  return bytes
}

export function decodePayload(bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

export function checkName(name: unknown): string {
  if (typeof name !== 'string' || !TASK_NAME.test(name)) throw invalid('name', 'a token of 1 to 64 letters, digits, ".", "_", ":" or "-", starting with a letter or digit')
  return name
}

/** `{delay, attempts}` as the app passes them (undefined: the defaults). */
export function checkEnqueueOptions(options: unknown): { delay: number; attempts: number } {
  if (options === undefined || options === null) return { delay: 0, attempts: DEFAULT_ATTEMPTS }
  if (typeof options !== 'object' || Array.isArray(options)) throw invalid('options', 'an object {delay?, attempts?}')
  const { delay = 0, attempts = DEFAULT_ATTEMPTS, ...rest } = options as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) throw invalid(`options.${unknown}`, 'absent (known: delay, attempts)')
  if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY_MS) throw invalid('delay', `an integer number of ms from 0 to ${MAX_DELAY_MS} (30 days)`)
  if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1 || attempts > MAX_ATTEMPTS) throw invalid('attempts', `an integer from 1 to ${MAX_ATTEMPTS}`)
  return { delay, attempts }
}

/** Everything `enqueue` takes, checked and encoded. */
export function newTask(name: unknown, payload: unknown, options?: unknown): NewTask {
  return { name: checkName(name), payload: encodePayload(payload), ...checkEnqueueOptions(options) }
}

/** A {@link NewTask} that crossed a wire: the payload arrives encoded, so only its size is checked again. */
export function checkNewTask(body: Record<string, unknown>): NewTask {
  const name = checkName(body['name'])
  const payload = body['payload']
  if (!(payload instanceof Uint8Array) || payload.length > MAX_PAYLOAD_BYTES) throw invalid('payload', `msgpack bytes, at most ${MAX_PAYLOAD_BYTES}`)
  const { delay, attempts } = checkEnqueueOptions({ delay: body['delay'], attempts: body['attempts'] })
  return { name, payload, delay, attempts }
}

export function checkId(id: unknown, field = 'id'): string {
  if (typeof id !== 'string' || !TASK_ID.test(id)) throw invalid(field, 'a task id such as t42')
  return id
}

/** The numeric part of a task id (ids order by it). */
export const idNumber = (id: string): number => Number(id.slice(1))

export function checkLeaseRefs(list: unknown, field: string, max: number): LeaseRef[] {
  if (!Array.isArray(list) || list.length > max) throw invalid(field, `a list of at most ${max} {id, attempt}`)
  return list.map((item, i) => {
    if (typeof item !== 'object' || item === null) throw invalid(`${field}[${i}]`, 'a map {id, attempt}')
    const { id, attempt } = item as Record<string, unknown>
    checkId(id, `${field}[${i}].id`)
    if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1 || attempt > MAX_ATTEMPTS) throw invalid(`${field}[${i}].attempt`, `an integer from 1 to ${MAX_ATTEMPTS}`)
    return { id: id as string, attempt }
  })
}

export function checkSettlements(list: unknown, max: number): Settlement[] {
  const refs = checkLeaseRefs(list, 'results', max)
  return refs.map((ref, i) => {
    const item = (list as Record<string, unknown>[])[i]!
    const result = item['result']
    if (result === 'done' || result === 'released') return { ...ref, result }
    if (result !== 'failed') throw invalid(`results[${i}].result`, 'done, failed or released')
    const error = item['error']
    const retryInMs = item['retryInMs']
    if (typeof error !== 'string') throw invalid(`results[${i}].error`, 'a string')
    if (typeof retryInMs !== 'number' || !Number.isInteger(retryInMs) || retryInMs < 0 || retryInMs > MAX_DELAY_MS) throw invalid(`results[${i}].retryInMs`, `an integer from 0 to ${MAX_DELAY_MS}`)
    return { ...ref, result, error: error.slice(0, MAX_ERROR_CHARS), retryInMs }
  })
}

/** Retry n (n = the attempt that failed) waits `base × 2^(n-1)`, at most an hour. */
export function backoff(baseMs: number, attempt: number): number {
  return Math.min(3_600_000, baseMs * 2 ** Math.min(attempt - 1, 30))
}
