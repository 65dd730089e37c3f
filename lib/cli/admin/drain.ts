/**
 * `espra-node admin drain <node>` and `admin undrain <node>`: the operator's
 * side of drain orders (docs/operations.md, "Drain"). The seed keeps the
 * order; these commands give it and, unless `--no-wait`, follow the node
 * until it reports `draining` (and, with `--then stop`, until it has left
 * the registry), printing each step.
 */
import { parseDuration } from '../../core/config-parsers.js'
import { createError } from '../../core/errors.js'
import type { MetaClient } from '../../transport/meta-client.js'
import {
  DEFAULT_DRAIN_GRACE_MS, DRAIN_THEN, MAX_DRAIN_GRACE_MS, NODE_ID_TEXT, type DrainOrder, type DrainThen,
} from '../../transport/drain-order.js'
import { NODE_ID } from '../../transport/meta-shapes.js'
import { connect, type ConnectOptions } from './cli.js'
import type { NodeView } from './format.js'

export interface DrainOptions extends ConnectOptions {
  then?: string
  grace?: string
  /** commander's `--no-wait` sets this false. */
  wait?: boolean
  force?: boolean
  timeout?: string
}

const REQUEST_TIMEOUT_MS = 5000
const POLL_MS = 250
const DEFAULT_WAIT = '15m'

const usage = (option: string, message: string) => createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: message })

/** The `<node>` argument, checked before anything is sent. */
export function checkNodeArg(id: string): string {
  if (!NODE_ID.test(id)) throw usage('<node>', `'${id}' is not a node id (${NODE_ID_TEXT})`)
  return id
}

/** `--grace`: 0 to 1 h. */
export function parseGrace(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_DRAIN_GRACE_MS
  let ms: number
  try {
    ms = parseDuration(raw)
  } catch (reason) {
    throw usage('--grace', String(reason))
  }
  if (ms > MAX_DRAIN_GRACE_MS) throw usage('--grace', `must be at most 1h (got ${raw})`)
  return ms
}

export function parseThen(raw: string | undefined): DrainThen {
  if (raw === undefined) return 'stop'
  if (!DRAIN_THEN.includes(raw as DrainThen)) throw usage('--then', `must be one of ${DRAIN_THEN.join(', ')} (got '${raw}')`)
  return raw as DrainThen
}

function parseWait(raw: string | undefined): number {
  try {
    const ms = parseDuration(raw ?? DEFAULT_WAIT)
    if (ms > 0) return ms
  } catch {
    // reported below
  }
  throw usage('--timeout', 'must be a duration above 0 such as 90s, 15m or 1h')
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)}s`

async function nodeNamed(client: MetaClient, id: string): Promise<NodeView | null> {
  const nodes = await client.request<NodeView[]>('nodes', {}, REQUEST_TIMEOUT_MS)
  return nodes.find((n) => n.id === id) ?? null
}

/** Polls the registry until `done` says so; prints each new health the node reports. */
async function follow(client: MetaClient, id: string, timeoutMs: number, what: string, done: (n: NodeView | null) => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  for (;;) {
    const node = await nodeNamed(client, id)
    const seen = node === null ? 'not registered' : `health ${node.health}`
    if (seen !== last) {
      process.stdout.write(`${new Date().toISOString()} ${id}: ${seen}\n`)
      last = seen
    }
    if (done(node)) return
    if (Date.now() >= deadline) {
      throw createError('ESPRA_ERR_NODE_DRAIN_TIMEOUT', { id, step: what, wait: seconds(timeoutMs) })
    }
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

export interface DrainAnswer {
  order: DrainOrder
  /** Whether the node is registered now (else it gets the order when it registers). */
  registered: boolean
  /** The order this one replaced. */
  previous: DrainOrder | null
}

/** Gives a drain order to node `id` (kept by the seed); returns at once, without following the node. */
export async function orderDrain(client: MetaClient, o: { id: string; then: DrainThen; graceMs: number; force: boolean }): Promise<DrainAnswer> {
  return client.request<DrainAnswer>('node.drain', { id: o.id, then: o.then, graceMs: o.graceMs, ...(o.force ? { force: true } : {}) }, REQUEST_TIMEOUT_MS)
}

/** Lifts node `id`'s drain order; `undrained` false when it had none. */
export async function orderUndrain(client: MetaClient, id: string): Promise<{ undrained: boolean; registered?: boolean }> {
  return client.request<{ undrained: boolean; registered?: boolean }>('node.undrain', { id }, REQUEST_TIMEOUT_MS)
}

export async function adminDrain(id: string, opts: DrainOptions): Promise<void> {
  const node = checkNodeArg(id)
  const then = parseThen(opts.then)
  const graceMs = parseGrace(opts.grace)
  const waitMs = parseWait(opts.timeout)
  const client = await connect(opts)
  try {
    const answer = await orderDrain(client, { id: node, then, graceMs, force: opts.force === true })
    process.stdout.write(`${node}: drain ordered (then ${then}, grace ${seconds(graceMs)})${answer.previous ? `, replacing the order of ${new Date(answer.previous.at).toISOString()}` : ''}; out of routing now\n`)
    if (!answer.registered) return void process.stdout.write(`${node}: not registered now; it gets the order when it registers\n`)
    if (opts.wait === false) return
    await follow(client, node, waitMs, 'report draining', (n) => n === null || n.health === 'draining')
    if (then === 'idle') return void process.stdout.write(`${node}: draining; idle after the grace until admin undrain\n`)
    await follow(client, node, waitMs, 'leave the registry', (n) => n === null)
    process.stdout.write(`${node}: stopped (admin undrain, then start it again, brings it back)\n`)
  } finally {
    await client.close()
  }
}

export async function adminUndrain(id: string, opts: DrainOptions): Promise<void> {
  const node = checkNodeArg(id)
  const waitMs = parseWait(opts.timeout)
  const client = await connect(opts)
  try {
    const answer = await orderUndrain(client, node)
    if (!answer.undrained) return void process.stdout.write(`${node}: not drained; nothing to do\n`)
    process.stdout.write(`${node}: undrained${answer.registered ? '' : ' (not registered now: start it again and it comes back in service)'}\n`)
    if (!answer.registered || opts.wait === false) return
    await follow(client, node, waitMs, 'report ok', (n) => n === null || n.health !== 'draining')
  } finally {
    await client.close()
  }
}
