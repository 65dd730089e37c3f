/**
 * `espra-node admin push-build | builds | rollback`: app builds over the
 * seed's meta port (ops `build.*`, docs/meta-protocol.md). `push-build`
 * sends only the content hashes the seed lacks, in chunks under the frame
 * limit, commits, then follows the two-phase deploy (`build.status`: each
 * node staged or refused) and returns once every app node and fileserver
 * reports the new build, or fails naming the nodes that refused it. With
 * `--canary` the build is current on the canary app nodes first while the
 * seed watches them (`build.status` state `canary`); a failed canary exits
 * 1 with the figures, canaries against the other app nodes.
 *
 * A leader failover (several seeds on PostgreSQL, more than one in `--seed`)
 * does not stop a push: the link follows the leader, and what the dead leader did not answer is asked
 * of the next one (leader-calls.ts). Uploads start again from
 * `build.plan` (blobs already stored are not sent twice); a commit that got
 * no answer is looked up by the push's own id (`pushId`) and sent again only
 * when no record has it (push-build-upload.ts); the deploy is followed to
 * its end on the new leader, which resumes it (docs/postgres.md).
 */
import { randomBytes } from 'node:crypto'
import { CANARY_MAX_MS, CANARY_MIN_MS, formatFigures, pct, type CanaryPlan, type CanaryState } from '../../builds/canary.js'
import type { BuildRecord, BuildStageNode } from '../../builds/manifest.js'
import { createError, EspraError } from '../../core/errors.js'
import type { MetaClient } from '../../transport/meta-client.js'
import { connect, resolveTarget, type ConnectOptions } from './cli.js'
import { formatBytes, type NodeView } from './format.js'
import { LeaderCalls, REQUEST_TIMEOUT_MS } from './leader-calls.js'
import { packDirectory } from './pack.js'
import { commitOnce } from './push-build-upload.js'

const POLL_MS = 200
/** While a canary is watched, its figures so far are printed this often. */
const CANARY_PROGRESS_MS = 10_000

export interface PushOptions extends ConnectOptions {
  message?: string
  /** How long to wait for fileservers to serve the build, e.g. `60s`. */
  timeout?: string
  /** Canary app nodes: a count (`2`) or a share of them (`25%`). */
  canary?: string
  /** How long the seed watches the canaries, e.g. `60s` (5s to 1h). */
  canaryTime?: string
}

export interface BuildListEntry extends Omit<BuildRecord, 'n' | 'manifestKey' | 'state' | 'stage' | 'canary' | 'stagingAt' | 'canaryPlanned' | 'canaryPlan'> {
  current: boolean
  /** How its last deploy went (`abandoned`: the seed restarted while it was staging). */
  state: NonNullable<BuildRecord['state']> | 'abandoned'
  /** Each node's part in that deploy. */
  stage: BuildStageNode[]
  nodes: string[]
  /** Nodes that refused this build (at staging, or when loading it later) and still run another. */
  refused: { node: string; code: string; message: string }[]
  /** Its canary deploy: running (`verdict` `watching`, `endsInMs`) or how it ended; null without one. */
  canary: CanaryState | null
}

const say = (line: string) => process.stderr.write(`${line}\n`)

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `--canary <n|percent%>` and `--canary-time <duration>` into the plan `build.commit` carries; refused with one line (exit 2). */
export function parseCanaryOptions(canary: string | undefined, canaryTime: string | undefined): CanaryPlan | null {
  const refuse = (option: string, why: string) => createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: why })
  if (canary === undefined) {
    if (canaryTime !== undefined) throw refuse('--canary-time', 'only with --canary')
    return null
  }
  const time = /^(\d{1,7})(ms|s|m|h)$/.exec(canaryTime ?? '60s')
  if (!time) throw refuse('--canary-time', 'must be a duration such as 30s, 2m or 1h')
  const timeMs = Number(time[1]) * UNITS[time[2]!]!
  if (timeMs < CANARY_MIN_MS || timeMs > CANARY_MAX_MS) throw refuse('--canary-time', `must be from 5s to 1h (got ${canaryTime})`)
  const count = /^[1-9]\d{0,3}$/.exec(canary)
  if (count) {
    if (Number(canary) > 1000) throw refuse('--canary', 'at most 1000 nodes')
    return { nodes: Number(canary), timeMs }
  }
  const share = /^(\d{1,3}(?:\.\d{1,3})?)%$/.exec(canary)
  if (share && Number(share[1]) > 0 && Number(share[1]) < 100) return { percent: Number(share[1]), timeMs }
  throw refuse('--canary', `must be a number of app nodes (1 or more) or a share of them above 0% and below 100%, such as 1 or 25% (got ${JSON.stringify(canary)})`)
}

function parseTimeout(raw: string | undefined): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(raw ?? '60s')
  if (!m) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--timeout', reason: 'must be a duration such as 30s or 2m' })
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[m[2] ?? 'ms']!
}

/** What `build.status` answers. */
export interface BuildStatus {
  id: string
  state: BuildListEntry['state']
  current: boolean
  nodes: BuildStageNode[]
  canary?: CanaryState
  /** A new leader stages it again (or goes on watching its canary) once its registry's grace ends (nodes re-register meanwhile). */
  resumeAfterGrace?: boolean
}

const SERVING_ROLES = new Set(['app', 'fileserver'])

/**
 * Waits until every live app node and fileserver (connected, not suspect,
 * not draining) reports `id`. Returns the ones that did not in time, with
 * the build they serve.
 */
export async function waitForNodes(client: MetaClient | LeaderCalls, id: string, timeoutMs: number): Promise<NodeView[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const nodes = await client.request<NodeView[]>('nodes', {}, REQUEST_TIMEOUT_MS)
    const behind = nodes.filter((n) => SERVING_ROLES.has(n.role) && n.connected && n.health !== 'suspect' && n.health !== 'draining' && n.build !== id)
    if (behind.length === 0 || Date.now() >= deadline) return behind
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

/**
 * Follows the deploy of `id` until the seed activated it (printing each
 * node's answer as it comes), then until every node serves it. The seed
 * ends every staging round by its own deadline, so this needs none of its own.
 */
async function finish(client: MetaClient | LeaderCalls, id: string, timeoutMs: number, canaryPlanned = false): Promise<void> {
  const told = new Map<string, string>()
  /** When the canary's figures were last printed (0: not watching yet). */
  let watching = 0
  let resumeSaid = false
  let status: BuildStatus
  for (;;) {
    status = await readBuildStatus(client, id)
    if (status.resumeAfterGrace === true && !resumeSaid) {
      resumeSaid = true
      told.clear()
      say(status.state === 'canary'
        ? `build ${id}: the new leader goes on watching its canary once the nodes have re-registered`
        : `build ${id}: the new leader stages it again once the nodes have re-registered`)
    }
    for (const n of status.nodes) {
      if (told.get(n.node) === n.state || n.state === 'staging') continue
      told.set(n.node, n.state)
      say(n.state === 'staged' ? `  ${n.node} (${n.role}): staged` : `  ${n.node} (${n.role}): refused: ${n.code} ${n.message}`)
    }
    if (status.state === 'canary' && status.canary !== undefined) {
      const c = status.canary
      if (watching === 0) say(`build ${id} current on canary node(s) ${c.nodes.join(', ')} only; the seed watches them for ${Math.round(c.timeMs / 1000)}s against ${c.baseline.nodes.join(', ')}`)
      else if (Date.now() - watching >= CANARY_PROGRESS_MS) say(`  ${Math.ceil((c.endsInMs ?? 0) / 1000)}s left; ${formatFigures('canary', c.canary)}; ${formatFigures('baseline', c.baseline)}`)
      if (watching === 0 || Date.now() - watching >= CANARY_PROGRESS_MS) watching = Date.now()
    }
    if (status.state !== 'staging' && status.state !== 'canary') break
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
  const canary = status.canary
  if (canary !== undefined && canary.verdict !== 'watching') {
    say(`  ${formatFigures('canary', canary.canary)}`)
    say(`  ${formatFigures('baseline', canary.baseline)}`)
  }
  if (status.state === 'canary-failed' && canary !== undefined) {
    throw createError('ESPRA_ERR_BUILD_CANARY_FAILED', {
      id, reason: `${canary.reasons.join('; ')}; canary 5xx ${pct(canary.canary.errorRate)} of ${canary.canary.requests}, p99 ${canary.canary.p99Ms ?? '-'} ms; baseline 5xx ${pct(canary.baseline.errorRate)} of ${canary.baseline.requests}, p99 ${canary.baseline.p99Ms ?? '-'} ms`,
      reasons: canary.reasons, canary: canary.canary, baseline: canary.baseline,
    })
  }
  if (canary?.verdict === 'passed') say(`canary passed`)
  if (status.state === 'refused') {
    const refused = status.nodes.filter((n) => n.state === 'refused')
    throw createError('ESPRA_ERR_BUILD_REFUSED', {
      id, refusals: refused.map((n) => `${n.node} (${n.code}: ${n.message})`).join(', '), nodes: refused.map((n) => ({ node: n.node, code: n.code, message: n.message })),
    })
  }
  if (status.state === 'abandoned') {
    throw createError('ESPRA_ERR_BUILD_ABANDONED', {
      id, reason: canary !== undefined || canaryPlanned ? 'its leader stopped during its canary deploy and no seed resumed it' : 'its leader stopped while it was staging and no seed resumed it',
    })
  }
  if (status.state !== 'live') {
    const during = canary !== undefined ? 'during its canary' : 'while it was staging'
    throw createError('ESPRA_ERR_BUILD_REPLACED', {
      build: id, during: `${during}, so it is current nowhere: ${status.state === 'replaced' ? 'a newer push or rollback replaced it' : 'the seed restarted'}`, id,
    })
  }
  say(`build ${id} activated on ${status.nodes.length} node(s); waiting until every app node and fileserver serves it`)
  const behind = await waitForNodes(client, id, timeoutMs)
  process.stdout.write(`${id}\n`)
  if (behind.length > 0) {
    const names = behind.map((n) => `${n.id} (serving ${n.build ?? 'nothing'})`).join(', ')
    throw createError('ESPRA_ERR_BUILD_NOT_SERVED', {
      id, ms: timeoutMs, behind: names, nodes: behind.map((n) => n.id),
    })
  }
}

export async function adminPushBuild(dir: string, opts: PushOptions): Promise<void> {
  const timeoutMs = parseTimeout(opts.timeout)
  const canary = parseCanaryOptions(opts.canary, opts.canaryTime)
  const packed = await packDirectory(dir)
  for (const path of packed.skipped) say(`skipped ${path} (not a regular file)`)
  // A failover needs another seed to go to: with one seed listed, losing it ends the push at once (exit 1), as before.
  const client = await connect(opts, undefined, resolveTarget(opts).seeds.length > 1)
  const calls = new LeaderCalls(client)
  try {
    const body = { manifest: packed.manifest, message: opts.message ?? '', ...(canary !== null ? { canary } : {}) }
    const built = await commitOnce(client, calls, packed, body, randomBytes(12).toString('base64url')).catch((err: unknown) => {
      // A --canary this cluster cannot run (no current build, too few app nodes, as many canaries as app nodes) is a
      // usage error like a malformed one: exit 2. Nothing was recorded; the files sent are kept for the next push.
      if ((err as EspraError).code !== 'ESPRA_ERR_BUILD_CANARY_UNAVAILABLE') throw err
      // Free text: the seed's own refusal, passed on as a usage error naming the option.
      throw new EspraError('ESPRA_ERR_CONFIG_INVALID', `--canary ${opts.canary}: ${(err as Error).message}`, { option: '--canary' })
    })
    if (built.staging !== null) {
      say(`build ${built.id}: ${built.files} files, ${formatBytes(built.bytes)}; ${built.uploadedBytes} bytes uploaded; staging on ${built.staging.length} node(s)${built.staging.length > 0 ? `: ${built.staging.join(', ')}` : ''}`)
      if (built.canary) say(`canary: ${built.canary.nodes.join(', ')} first, watched for ${Math.round(built.canary.timeMs / 1000)}s`)
    }
    await finish(calls, built.id, timeoutMs, canary !== null)
  } finally {
    await client.close()
  }
}

/** Every build, newest first, and which is current (`build.list`). */
export async function listBuilds(client: MetaClient): Promise<{ current: string | null; builds: BuildListEntry[] }> {
  return client.request<{ current: string | null; builds: BuildListEntry[] }>('build.list', {}, REQUEST_TIMEOUT_MS)
}

/** One build's deploy as the seed follows it (`build.status`): each node staged or refused. */
export async function readBuildStatus(client: MetaClient | LeaderCalls, id: string): Promise<BuildStatus> {
  return client.request<BuildStatus>('build.status', { id }, REQUEST_TIMEOUT_MS)
}

/** Starts a rollback to `id` (staged first, like a push); follow it with {@link readBuildStatus}. */
export async function startRollback(client: MetaClient, id: string): Promise<{ id: string; staging: string[] }> {
  return client.request<{ id: string; staging: string[] }>('build.rollback', { id }, REQUEST_TIMEOUT_MS)
}

export async function adminRollback(id: string, opts: ConnectOptions & { timeout?: string }): Promise<void> {
  const timeoutMs = parseTimeout(opts.timeout)
  const client = await connect(opts)
  try {
    const rolled = await startRollback(client, id)
    say(`rollback to ${id}: staging on ${rolled.staging.length} node(s)`)
    await finish(client, id, timeoutMs)
  } finally {
    await client.close()
  }
}

export function formatBuilds(builds: readonly BuildListEntry[]): string {
  if (builds.length === 0) return '(no builds)'
  const columns: [string, (b: BuildListEntry) => string][] = [
    ['ID', (b) => `${b.id}${b.current ? '*' : ''}`],
    ['TIME', (b) => new Date(b.at).toISOString().replace(/\.\d+Z$/, 'Z')],
    ['FILES', (b) => String(b.files)],
    ['BYTES', (b) => formatBytes(b.bytes)],
    ['STATE', (b) => b.state],
    ['CANARY', (b) => (b.canary === null ? '-' : `${b.canary.nodes.join(',')} ${b.canary.verdict === 'watching' ? `${Math.ceil((b.canary.endsInMs ?? 0) / 1000)}s left` : b.canary.verdict}`)],
    ['NODES', (b) => (b.nodes.length === 0 ? '-' : b.nodes.join(','))],
    ['REFUSED BY', (b) => (b.refused.length === 0 ? '-' : b.refused.map((r) => `${r.node} (${r.code})`).join(','))],
    ['MESSAGE', (b) => b.message.replace(/\s+/g, ' ')],
  ]
  const rows = [columns.map(([title]) => title), ...builds.map((b) => columns.map(([, cell]) => cell(b)))]
  const widths = columns.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

export async function adminBuilds(opts: ConnectOptions & { json?: boolean }): Promise<void> {
  const client = await connect(opts)
  try {
    const { builds } = await listBuilds(client)
    process.stdout.write(opts.json ? `${JSON.stringify(builds)}\n` : `${formatBuilds(builds)}\n(* current)\n`)
    if (opts.json) return
    for (const b of builds) for (const r of b.refused) process.stdout.write(`${b.id} refused by ${r.node}: ${r.message}\n`)
    const staging = builds.find((b) => b.state === 'staging')
    if (staging) process.stdout.write(`${staging.id} staging: ${staging.stage.map((n) => `${n.node} ${n.state}`).join(', ')}\n`)
    // The newest canary (running, or how it ended): figures, canaries against the other app nodes.
    const last = builds.find((b) => b.canary !== null)
    if (last !== undefined) {
      const b = last
      const c = b.canary!
      const head = c.verdict === 'watching' ? `${b.id} canary on ${c.nodes.join(', ')}: ${Math.ceil((c.endsInMs ?? 0) / 1000)}s left` : `${b.id} canary ${c.verdict}${c.reasons.length > 0 ? `: ${c.reasons.join('; ')}` : ''}`
      process.stdout.write(`${head}\n  ${formatFigures('canary', c.canary)}\n  ${formatFigures('baseline', c.baseline)}\n`)
    }
  } finally {
    await client.close()
  }
}
