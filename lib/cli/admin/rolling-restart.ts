/**
 * `espra-node admin rolling-restart --role <role>`: every node of a role, one
 * batch of nodes at a time, in one of two modes:
 *
 * - reload (default): each node replaces its children one at a time, new
 *   child first (what SIGHUP does), so it keeps serving throughout. The seed
 *   forwards the request to each node (`node.reload`) and answers once the
 *   node has replaced them.
 * - restart: each node is drained with a `restart` order (`node.drain`): out
 *   of routing and its ELB target group, serves through `--grace`, stops and
 *   exits 75, which the process manager (infra/systemd, `espra-node up`)
 *   answers by starting it again; the seed lifts the order when the new
 *   process registers.
 *
 * Either way the CLI then waits for the node to be registered, healthy with
 * every child and, with `--elb-target-group`, `healthy` in its target group,
 * before the next batch. It never starts a batch that would leave fewer than
 * `--min-healthy` other healthy nodes of the role, and stops at the first
 * failure, naming the node and why.
 *
 * A leader failover (several seeds on PostgreSQL) does not stop it: what the
 * run stands on is in the nodes and the datastore (restart orders), so its
 * requests are asked again of the next leader ({@link SeedCalls}).
 */
import { durationIn, integer, oneOf } from '../../core/config-parsers.js'
import { ROLE_NAMES } from '../../core/config.js'
import { createError, EspraError } from '../../core/errors.js'
import type { MetaClient } from '../../transport/meta-client.js'
import { RESTART_EXIT_CODE } from '../../transport/drain-order.js'
import { REGION } from '../../transport/meta-shapes.js'
import { connect, type ConnectOptions } from './cli.js'
import { parseGrace } from './drain.js'
import type { NodeView } from './format.js'
import { FAILOVER } from './leader-calls.js'

export interface RollingRestartFlags extends ConnectOptions {
  role?: string
  region?: string
  batch?: string
  minHealthy?: string
  timeout?: string
  mode?: string
  grace?: string
}

export type RollingMode = 'reload' | 'restart'

export interface RollingRestartPlan {
  readonly role: string
  readonly region: string | null
  readonly mode: RollingMode
  /** Restart mode: how long a node serves once out of routing and its target group; null in reload mode. */
  readonly graceMs: number | null
  readonly batch: number
  /** Null: not given (0). */
  readonly minHealthy: number | null
  readonly timeoutMs: number
}

const NODES_TIMEOUT_MS = 5000
const POLL_MS = 250
/** Beyond the node's own deadline, how long the seed's answer may take to come back. */
const ANSWER_SLACK_MS = 5000

function invalid(option: string, why: string): EspraError {
  return createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: why })
}

function parse<T>(option: string, raw: string, parser: (raw: string) => T): T {
  try {
    return parser(raw)
  } catch (reason) {
    throw invalid(option, String(reason))
  }
}

/** Checks the flags once, before anything is asked of the seed. */
export function planOf(flags: RollingRestartFlags): RollingRestartPlan {
  if (flags.role === undefined) throw invalid('--role', `required: one of ${ROLE_NAMES.filter((r) => r !== 'seed').join(', ')}`)
  const role = parse('--role', flags.role, oneOf(ROLE_NAMES))
  if (role === 'seed') throw invalid('--role', 'the seed runs in its parent only (no children to replace): restart seeds with your process manager, one at a time')
  const mode = parse('--mode', flags.mode ?? 'reload', oneOf(['reload', 'restart'] as const))
  if (mode === 'reload' && flags.grace !== undefined) throw invalid('--grace', 'only with --mode restart (a reload never takes the node out of service)')
  const graceMs = mode === 'restart' ? parseGrace(flags.grace) : null
  if (flags.region !== undefined && !REGION.test(flags.region)) throw invalid('--region', 'lower-case letters, digits and dashes, at most 32')
  const timeoutMs = parse('--timeout', flags.timeout ?? '120s', durationIn(1000, 3_600_000))
  if (graceMs !== null && graceMs >= timeoutMs) throw invalid('--timeout', `must be longer than --grace (${seconds(graceMs)}): it bounds the whole restart of one node, grace included`)
  return {
    role,
    region: flags.region ?? null,
    mode,
    graceMs,
    batch: parse('--batch', flags.batch ?? '1', integer(1, 1000)),
    minHealthy: flags.minHealthy === undefined ? null : parse('--min-healthy', flags.minHealthy, integer(0, 100_000)),
    timeoutMs,
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`
const say = (line: string): void => void process.stderr.write(`${line}\n`)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A node is back once it is registered, connected, healthy, runs every child it wants and, in a target group, is `healthy` there. */
function back(node: NodeView | undefined): boolean {
  return node !== undefined && node.connected && node.health === 'ok' && node.children === node.childrenWanted &&
    (node.elb === undefined || node.elb.state === 'healthy')
}

/** Why a node is not back, for a timeout message. */
function notBack(node: NodeView | undefined): string {
  if (node === undefined) return 'not registered'
  const elb = node.elb === undefined ? '' : `, ELB target ${node.elb.state} in ${node.elb.targetGroup}`
  return `health ${node.health}, ${node.children} of ${node.childrenWanted} children${elb}`
}

const inElb = (node: NodeView): string => (node.elb === undefined ? '' : ', healthy in its ELB target group')

/**
 * The run's requests to the seed, asked again through a leader failover until
 * the caller's deadline (the link follows the leader: `connect(..., lasting)`).
 * After a failover the new leader may not know a node yet (nodes re-register
 * within its grace), so `ESPRA_ERR_NODE_UNKNOWN` is asked again too from then
 * on. A request that may have been applied by the old leader is asked again
 * only after `applied` (when given) found no sign of it; a reload asked twice
 * replaces the node's children twice, which costs time and loses nothing.
 * The failover codes are leader-calls.ts's, shared with `admin push-build`.
 */
class SeedCalls {
  /** Whether a request of this run met a failover. */
  failedOver = false

  constructor(private readonly client: MetaClient) {}

  async request<R>(op: string, body: unknown, timeoutMs: number, deadline: number, applied?: () => Promise<R | undefined>): Promise<R> {
    for (let again = false; ; again = true) {
      if (again && applied !== undefined) {
        const done = await applied()
        if (done !== undefined) return done
      }
      try {
        return await this.client.request<R>(op, body, timeoutMs)
      } catch (err) {
        const { code, details } = err as EspraError
        const stopped = (details as { stopped?: unknown } | undefined)?.stopped === true
        if (FAILOVER.has(code)) this.failedOver = true
        const retry = FAILOVER.has(code) || (this.failedOver && code === 'ESPRA_ERR_NODE_UNKNOWN')
        if (stopped || !retry || Date.now() > deadline) throw err
        await sleep(POLL_MS)
      }
    }
  }
}

interface Step {
  /** `[i/n] id:` */
  readonly tag: string
  readonly node: NodeView
  readonly deadline: number
  find(): Promise<NodeView | undefined>
  /** Where progress lines go (stderr for the CLI, the job record for the API). */
  say(line: string): void
}

/** Polls until `done`; on the deadline throws `code` with `why(now)`. */
async function until(step: Step, done: (now: NodeView | undefined) => boolean, code: 'ESPRA_ERR_NODE_RELOAD_TIMEOUT' | 'ESPRA_ERR_ROLLING_RESTART_TIMEOUT', why: (now: NodeView | undefined) => string): Promise<NodeView | undefined> {
  for (;;) {
    const now = await step.find()
    if (done(now)) return now
    if (Date.now() > step.deadline) throw createError(code, { id: step.node.id, reason: why(now) })
    await sleep(POLL_MS)
  }
}

async function reloadOne(calls: SeedCalls, plan: RollingRestartPlan, step: Step): Promise<string> {
  const { node } = step
  step.say(`${step.tag} replacing ${node.childrenWanted} children`)
  const outcome = await calls.request<{ replaced: number }>('node.reload', { id: node.id, timeoutMs: plan.timeoutMs }, plan.timeoutMs + ANSWER_SLACK_MS, step.deadline)
  // The node has replaced its children; the next batch waits until the seed sees it whole and healthy again.
  const now = await until(step, back, 'ESPRA_ERR_NODE_RELOAD_TIMEOUT', (n) => `not healthy with all children within ${seconds(plan.timeoutMs)} (${notBack(n)})`)
  return `${outcome.replaced} children replaced, healthy${inElb(now!)}`
}

async function restartOne(calls: SeedCalls, plan: RollingRestartPlan, step: Step): Promise<string> {
  const { node } = step
  // A restart order, kept by the seed: if this CLI dies now, the node still restarts and comes back in service,
  // and a node that is not started again stays listed as drained (admin status) until admin undrain.
  // Asked again after a failover only if the next leader shows neither the order nor a restarted process.
  const { order } = await calls.request<{ order: { restartOf?: number } }>('node.drain', { id: node.id, then: 'restart', graceMs: plan.graceMs }, NODES_TIMEOUT_MS, step.deadline, async () => {
    const now = await step.find()
    if (now?.drain?.then === 'restart') return { order: now.drain }
    return now !== undefined && now.startedAt !== node.startedAt ? { order: { restartOf: node.startedAt } } : undefined
  })
  // The process the seed will restart (the node's own start time); any other one registering is the new process.
  const of = order.restartOf ?? node.startedAt
  step.say(`${step.tag} draining (out of routing${node.elb === undefined ? '' : ' and its ELB target group'}, grace ${seconds(plan.graceMs!)}), then stopping to be restarted`)
  const restarted = (n: NodeView | undefined): boolean => n !== undefined && n.startedAt !== of
  const stillOrdered = 'its restart order stands: admin status shows it, admin undrain lifts it'
  const stopped = await until(step, (n) => n === undefined || restarted(n), 'ESPRA_ERR_ROLLING_RESTART_TIMEOUT',
    (n) => `did not stop within ${seconds(plan.timeoutMs)} (${notBack(n)}); ${stillOrdered}`)
  step.say(stopped === undefined
    ? `${step.tag} stopped (pid ${node.pid}); waiting for its process manager to start it again`
    : `${step.tag} stopped (pid ${node.pid}) and already started again (pid ${stopped.pid}); waiting for it to be back in service`)
  const now = await until(step, (n) => restarted(n) && !n!.drain && back(n), 'ESPRA_ERR_ROLLING_RESTART_TIMEOUT', (n) => restarted(n)
    ? `started again (pid ${n!.pid}) but not back within ${seconds(plan.timeoutMs)} (${n!.drain ? `still drained, ${notBack(n)}` : notBack(n)}); ${stillOrdered}`
    : `not started again within ${seconds(plan.timeoutMs)}: is it run by a process manager that restarts exit status ${RESTART_EXIT_CODE} (infra/systemd/espra-node@.service, espra-node up)? ${stillOrdered}`)
  return `restarted (pid ${node.pid} -> ${now!.pid}), undrained, healthy${inElb(now!)}`
}

/** How a rolling restart ended. */
export interface RollingRestartResult {
  role: string
  region: string | null
  mode: RollingMode
  /** Nodes restarted (every one, or the run would have thrown). */
  done: number
  /** Drained by an operator, left alone (restart mode). */
  skipped: string[]
  ms: number
}

/**
 * Runs `plan` to its end over `client`; each step goes to `say`. Throws at
 * the first failure (coded, naming the node), the rest untouched.
 */
export async function runRollingRestart(client: MetaClient, plan: RollingRestartPlan, say: (line: string) => void): Promise<RollingRestartResult> {
  const started = Date.now()
  const where = plan.region === null ? '' : ` in region ${plan.region}`
  const calls = new SeedCalls(client)
  const list = async (deadline = Date.now() + plan.timeoutMs): Promise<NodeView[]> =>
    calls.request<NodeView[]>('nodes', { role: plan.role, ...(plan.region === null ? {} : { region: plan.region }) }, NODES_TIMEOUT_MS, deadline)
  const all = (await list()).sort((a, b) => a.id.localeCompare(b.id))
  const scope = plan.region === null ? 'in any region' : `in region ${plan.region}`
  if (all.length === 0) throw createError('ESPRA_ERR_ROLLING_NO_NODES', { role: plan.role, where: scope, reason: 'none is registered' })
  // A restart would replace an operator's drain order (and so end it): drained nodes are left as they are.
  const skipped = plan.mode === 'restart' ? all.filter((n) => n.drain) : []
  const nodes = all.filter((n) => !skipped.includes(n))
  for (const n of skipped) say(`${n.id}: skipped: drained by an operator (then ${n.drain!.then}); admin undrain it first to restart it`)
  if (nodes.length === 0) throw createError('ESPRA_ERR_ROLLING_NO_NODES', { role: plan.role, where: scope, reason: 'every one is drained by an operator (admin undrain lifts an order)' })
  const minHealthy = plan.minHealthy ?? 0
  if (minHealthy > all.length) {
    throw createError('ESPRA_ERR_ROLLING_MIN_HEALTHY', { minHealthy, reason: `it is more than the ${all.length} ${plan.role} node(s)${where}, so it can never be honoured` })
  }
  // Nodes in a batch count as out of service while they reload or restart: the rest must still make --min-healthy.
  const healthy = all.filter((n) => n.health === 'ok').length
  const worstBatch = nodes.slice(0, plan.batch).filter((n) => n.health === 'ok').length
  if (healthy - Math.min(plan.batch, worstBatch) < minHealthy) {
    throw createError('ESPRA_ERR_ROLLING_MIN_HEALTHY', { minHealthy, reason: `${healthy} of ${all.length} ${plan.role} node(s)${where} are healthy, and a batch of ${plan.batch} would leave ${Math.max(0, healthy - plan.batch)}; lower --batch or --min-healthy` })
  }
  const how = plan.mode === 'reload' ? 'reload mode' : `restart mode, grace ${seconds(plan.graceMs!)}`
  say(`rolling restart (${how}) of ${nodes.length} ${plan.role} node(s)${where}, ${plan.batch} at a time, keeping at least ${minHealthy} healthy`)
  let done = 0
  for (let i = 0; i < nodes.length; i += plan.batch) {
    const batch = nodes.slice(i, i + plan.batch)
    const ids = new Set(batch.map((n) => n.id))
    const healthyOthers = async () => (await list()).filter((n) => !ids.has(n.id) && n.health === 'ok').length
    let others = await healthyOthers()
    // After a failover the new leader lists nodes as they re-register: give them until the timeout to come back.
    for (const until = Date.now() + plan.timeoutMs; others < minHealthy && calls.failedOver && Date.now() < until; others = await healthyOthers()) await sleep(POLL_MS)
    if (others < minHealthy) {
      throw createError('ESPRA_ERR_ROLLING_MIN_HEALTHY', { minHealthy, reason: `only ${others} other ${plan.role} node(s) are healthy; stopped before ${[...ids].join(', ')}, ${done} of ${nodes.length} done` })
    }
    // Every node of the batch runs to its end; the first failure stops the run.
    const outcomes = await Promise.allSettled(batch.map(async (node) => {
      const t0 = Date.now()
      const step: Step = {
        tag: `[${done + 1}/${nodes.length}] ${node.id}:`, node, deadline: t0 + plan.timeoutMs, say,
        find: async () => (await list(t0 + plan.timeoutMs)).find((n) => n.id === node.id),
      }
      try {
        const what = plan.mode === 'reload' ? await reloadOne(calls, plan, step) : await restartOne(calls, plan, step)
        done++
        say(`[${done}/${nodes.length}] ${node.id}: ${what} (${seconds(Date.now() - t0)})`)
      } catch (err) {
        const e = err as EspraError
        say(`${step.tag} FAILED: ${e.code}: ${e.message}`)
        // Free text: the failure's own message (any code, often a node's answer), with the node added.
        throw new EspraError(e.code ?? 'ESPRA_ERR_NODE_RELOAD_FAILED', `rolling restart stopped at node ${node.id}: ${e.message}`, { node: node.id })
      }
    }))
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')
    if (failure) {
      const err = failure.reason as EspraError
      // Free text: the failed step's message as it is (its code and details kept), with the progress added.
      throw new EspraError(err.code, `${err.message}; ${done} of ${nodes.length} ${plan.role} node(s) done, the rest untouched`, err.details)
    }
  }
  return { role: plan.role, region: plan.region, mode: plan.mode, done, skipped: skipped.map((n) => n.id), ms: Date.now() - started }
}

/** The last line `admin rolling-restart` prints. */
export function formatRollingRestart(r: RollingRestartResult): string {
  const where = r.region === null ? '' : ` in region ${r.region}`
  const skippedText = r.skipped.length === 0 ? '' : `, ${r.skipped.length} skipped (drained)`
  return `rolling restart of ${r.done} ${r.role} node(s)${where} done: ${r.done} ${r.mode === 'reload' ? 'reloaded' : 'restarted'}, 0 failed${skippedText}, in ${seconds(r.ms)}`
}

export async function adminRollingRestart(flags: RollingRestartFlags): Promise<void> {
  const plan = planOf(flags)
  const client = await connect(flags, undefined, true)
  try {
    process.stdout.write(`${formatRollingRestart(await runRollingRestart(client, plan, say))}\n`)
  } finally {
    await client.close()
  }
}
