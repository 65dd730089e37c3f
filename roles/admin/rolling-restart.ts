/**
 * `espra-node admin rolling-restart --role <role>`: replaces the children of
 * every node of a role, one batch of nodes at a time, in reload mode: each
 * node replaces its children one at a time, new child first (what SIGHUP
 * does), so the node keeps serving throughout. The seed forwards the request
 * to each node (`node.reload`) and answers once the node has replaced them;
 * the CLI then waits for the node to be registered and healthy with every
 * child before the next batch. It never starts a batch that would leave
 * fewer than `--min-healthy` other healthy nodes of the role, and stops at
 * the first failure, naming the node and why.
 */
import { durationIn, integer, oneOf } from '../../lib/core/config-parsers.js'
import { ROLE_NAMES } from '../../lib/core/config.js'
import { EspraError } from '../../lib/core/errors.js'
import { REGION } from '../../lib/transport/meta-shapes.js'
import { connect, type ConnectOptions } from './cli.js'
import type { NodeView } from './format.js'

export interface RollingRestartFlags extends ConnectOptions {
  role?: string
  region?: string
  batch?: string
  minHealthy?: string
  timeout?: string
  mode?: string
}

export interface RollingRestartPlan {
  readonly role: string
  readonly region: string | null
  readonly batch: number
  /** Null: not given (0: reload mode keeps every node serving). */
  readonly minHealthy: number | null
  readonly timeoutMs: number
}

const NODES_TIMEOUT_MS = 5000
const POLL_MS = 250
/** Beyond the node's own deadline, how long the seed's answer may take to come back. */
const ANSWER_SLACK_MS = 5000

function invalid(option: string, why: string): EspraError {
  return new EspraError('ESPRA_ERR_CONFIG_INVALID', `${option}: ${why}`, { option })
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
  if (mode === 'restart') throw new EspraError('ESPRA_ERR_NOT_IMPLEMENTED', '--mode restart (drain, stop and let the process manager start the node again) is not built yet; --mode reload replaces children in place')
  if (flags.region !== undefined && !REGION.test(flags.region)) throw invalid('--region', 'lower-case letters, digits and dashes, at most 32')
  return {
    role,
    region: flags.region ?? null,
    batch: parse('--batch', flags.batch ?? '1', integer(1, 1000)),
    minHealthy: flags.minHealthy === undefined ? null : parse('--min-healthy', flags.minHealthy, integer(0, 100_000)),
    timeoutMs: parse('--timeout', flags.timeout ?? '120s', durationIn(1000, 3_600_000)),
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`
const say = (line: string): void => void process.stderr.write(`${line}\n`)

/** A node is back once it is registered, connected, healthy and runs every child it wants. */
function back(node: NodeView | undefined): boolean {
  return node !== undefined && node.connected && node.health === 'ok' && node.children === node.childrenWanted
}

export async function adminRollingRestart(flags: RollingRestartFlags): Promise<void> {
  const plan = planOf(flags)
  const client = await connect(flags)
  const started = Date.now()
  const where = plan.region === null ? '' : ` in region ${plan.region}`
  const list = async (): Promise<NodeView[]> =>
    client.request<NodeView[]>('nodes', { role: plan.role, ...(plan.region === null ? {} : { region: plan.region }) }, NODES_TIMEOUT_MS)
  try {
    const nodes = (await list()).sort((a, b) => a.id.localeCompare(b.id))
    if (nodes.length === 0) throw new EspraError('ESPRA_ERR_NODE_UNKNOWN', `no ${plan.role} nodes registered${where}`)
    const minHealthy = plan.minHealthy ?? 0
    if (minHealthy > nodes.length) {
      throw new EspraError('ESPRA_ERR_ROLLING_MIN_HEALTHY', `--min-healthy ${minHealthy} is more than the ${nodes.length} ${plan.role} node(s)${where}: it can never be honoured`)
    }
    // Nodes in a batch count as out of service while they reload: the rest must still make --min-healthy.
    const healthy = nodes.filter((n) => n.health === 'ok').length
    const worstBatch = nodes.slice(0, plan.batch).filter((n) => n.health === 'ok').length
    if (healthy - Math.min(plan.batch, worstBatch) < minHealthy) {
      throw new EspraError('ESPRA_ERR_ROLLING_MIN_HEALTHY', `--min-healthy ${minHealthy}: ${healthy} of ${nodes.length} ${plan.role} node(s)${where} are healthy, and a batch of ${plan.batch} would leave ${Math.max(0, healthy - plan.batch)}; lower --batch or --min-healthy`)
    }
    say(`rolling restart (reload mode) of ${nodes.length} ${plan.role} node(s)${where}, ${plan.batch} at a time, keeping at least ${minHealthy} healthy`)
    let done = 0
    for (let i = 0; i < nodes.length; i += plan.batch) {
      const batch = nodes.slice(i, i + plan.batch)
      const ids = new Set(batch.map((n) => n.id))
      const others = (await list()).filter((n) => !ids.has(n.id) && n.health === 'ok').length
      if (others < minHealthy) {
        throw new EspraError('ESPRA_ERR_ROLLING_MIN_HEALTHY', `stopped before ${[...ids].join(', ')}: only ${others} other ${plan.role} node(s) are healthy, --min-healthy is ${minHealthy}; ${done} of ${nodes.length} done`)
      }
      // Every node of the batch runs to its end (the nodes replace their children anyway); the first failure stops the run.
      const outcomes = await Promise.allSettled(batch.map(async (node) => {
        const t0 = Date.now()
        say(`[${done + 1}/${nodes.length}] ${node.id}: replacing ${node.childrenWanted} children`)
        try {
          const outcome = await client.request<{ replaced: number }>('node.reload', { id: node.id, timeoutMs: plan.timeoutMs }, plan.timeoutMs + ANSWER_SLACK_MS)
          // The node has replaced its children; the next batch waits until the seed sees it whole and healthy again.
          const deadline = t0 + plan.timeoutMs
          for (;;) {
            const now = (await list()).find((n) => n.id === node.id)
            if (back(now)) break
            if (Date.now() > deadline) {
              throw new EspraError('ESPRA_ERR_NODE_RELOAD_TIMEOUT', `not healthy with all children within ${seconds(plan.timeoutMs)} (${now === undefined ? 'not registered' : `health ${now.health}, ${now.children} of ${now.childrenWanted} children`})`)
            }
            await new Promise((r) => setTimeout(r, POLL_MS))
          }
          done++
          say(`[${done}/${nodes.length}] ${node.id}: ${outcome.replaced} children replaced, healthy (${seconds(Date.now() - t0)})`)
        } catch (err) {
          const e = err as EspraError
          say(`[${done + 1}/${nodes.length}] ${node.id}: FAILED: ${e.code}: ${e.message}`)
          throw new EspraError(e.code ?? 'ESPRA_ERR_NODE_RELOAD_FAILED', `rolling restart stopped at node ${node.id}: ${e.message}`, { node: node.id })
        }
      }))
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')
      if (failure) {
        const err = failure.reason as EspraError
        throw new EspraError(err.code, `${err.message}; ${done} of ${nodes.length} ${plan.role} node(s) done, the rest untouched`, err.details)
      }
    }
    process.stdout.write(`rolling restart of ${nodes.length} ${plan.role} node(s)${where} done: ${done} reloaded, 0 failed, in ${seconds(Date.now() - started)}\n`)
  } finally {
    await client.close()
  }
}
