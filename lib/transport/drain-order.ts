/**
 * Drain orders (docs/meta-protocol.md, "Drain"): what `admin drain` asks of a
 * node, as the seed stores it, pushes it and the node parent carries it out.
 * In lib/ so the seed, the node parent and the admin CLI check one shape.
 */
import { createError } from '../core/errors.js'
import { isMap, NODE_ID } from './meta-shapes.js'

/**
 * What a drained node does once its grace and in-flight work are over:
 * `restart` (given by `admin rolling-restart --mode restart`, not by `admin
 * drain`) stops with {@link RESTART_EXIT_CODE} so the process manager starts
 * it again, and the seed lifts the order when a new process registers.
 */
export type DrainThen = 'stop' | 'idle' | 'restart'
/** What `admin drain --then` accepts. */
export const DRAIN_THEN: readonly DrainThen[] = ['stop', 'idle']
/** Every order a seed stores and pushes. */
export const ORDER_THEN: readonly DrainThen[] = ['stop', 'idle', 'restart']

/**
 * The exit status of a node that stopped under a `restart` order: "start me
 * again". EX_TEMPFAIL (sysexits.h); the shipped systemd unit restarts it
 * (`RestartForceExitStatus=75`, and `SuccessExitStatus=75` so it is not logged
 * as a failure), and `espra-node up` starts it again at once.
 */
export const RESTART_EXIT_CODE = 75

/** The longest `--grace` accepted: an ALB's own deregistration delay tops out at one hour. */
export const MAX_DRAIN_GRACE_MS = 3_600_000
/** `--grace` when none is given: ALBs keep sending to a deregistered target for a few seconds. */
export const DEFAULT_DRAIN_GRACE_MS = 20_000

export interface DrainOrder {
  readonly then: DrainThen
  /** How long the node keeps serving after it left routing and its target group. */
  readonly graceMs: number
  /** When the seed took the order, ms since the epoch. */
  readonly at: number
  /** `restart` orders: the `startedAt` of the process to restart (the node's clock); a process started otherwise has been restarted. */
  readonly restartOf?: number
}

/** Body of the one-way `drain` push (seed → node): the node's order, null when it is not (or no longer) drained. */
export interface DrainPush {
  readonly order: DrainOrder | null
}

/** Datastore key (kind `cluster`) of a node's order. */
export const drainKey = (id: string): string => `drain/${id}`
export const DRAIN_KEY_PREFIX = 'drain/'

const bad = (field: string, allowed: string) => createError('ESPRA_ERR_META_BAD_REQUEST', { field, reason: `must be ${allowed}` })

/** What a node id may be, in words. */
export const NODE_ID_TEXT = 'letters, digits, ".", "_" and "-", at most 64'

/** Checks a node id received in a request body (`details.field` `id`). */
export function parseNodeId(value: unknown): string {
  if (typeof value !== 'string' || !NODE_ID.test(value)) throw bad('id', `a node id: ${NODE_ID_TEXT}`)
  return value
}

/** Checks `then`: `stop`, `idle` or `restart`. */
export function parseDrainThen(value: unknown, field = 'then'): DrainThen {
  if (!ORDER_THEN.includes(value as DrainThen)) throw bad(field, `one of ${ORDER_THEN.join(', ')}`)
  return value as DrainThen
}

/** Checks a grace in whole milliseconds, 0 to {@link MAX_DRAIN_GRACE_MS}. */
export function parseGraceMs(value: unknown, field = 'graceMs'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_DRAIN_GRACE_MS) {
    throw bad(field, `an integer number of milliseconds from 0 to ${MAX_DRAIN_GRACE_MS}`)
  }
  return value
}

/** Body of `node.drain`: `{id, then?, graceMs?, force?}`; throws `ESPRA_ERR_META_BAD_REQUEST` naming the field. */
export function parseDrainRequest(body: unknown): { id: string; then: DrainThen; graceMs: number; force: boolean } {
  if (!isMap(body)) throw bad('body', 'a map')
  const id = parseNodeId(body['id'])
  const then = body['then'] === undefined ? 'stop' : parseDrainThen(body['then'])
  const graceMs = body['graceMs'] === undefined ? DEFAULT_DRAIN_GRACE_MS : parseGraceMs(body['graceMs'])
  const force = body['force']
  if (force !== undefined && typeof force !== 'boolean') throw bad('force', 'a boolean')
  return { id, then, graceMs, force: force === true }
}

/** An order read back from the datastore or a push; null when it is not one (a stored record of another version is ignored, not trusted). */
export function asDrainOrder(value: unknown): DrainOrder | null {
  if (!isMap(value)) return null
  const { then, graceMs, at, restartOf } = value
  if (!ORDER_THEN.includes(then as DrainThen)) return null
  if (typeof graceMs !== 'number' || !Number.isInteger(graceMs) || graceMs < 0 || graceMs > MAX_DRAIN_GRACE_MS) return null
  if (typeof at !== 'number' || !Number.isFinite(at) || at < 0) return null
  if (then === 'restart') {
    if (typeof restartOf !== 'number' || !Number.isFinite(restartOf) || restartOf < 0) return null
    return { then, graceMs, at, restartOf }
  }
  return { then: then as DrainThen, graceMs, at }
}
