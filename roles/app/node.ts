/**
 * The app parent: keeps the last build the seed pushed (for children forked
 * later), reports the build every child serves (while children disagree or
 * some have not loaded one yet, the one they last agreed on), and logs a build its children refused (init
 * threw, the module did not load, files missing): the node keeps serving the
 * previous build. With `--redis` it also watches Redis: while Redis does not
 * answer, the node's health is `degraded` with `dependencies.redis` saying why.
 */
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { isBuildPush, type BuildPush } from '../../lib/builds/manifest.js'
import { startBuildStageReports } from '../../lib/process/build-stage.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { isMap, type AppLoad } from '../../lib/transport/meta-shapes.js'
import { createError } from '../../lib/core/errors.js'
import { MODULE_MARKER } from './build-files.js'
import type { AnswersReport } from './answer-meter.js'
import type { AppSeedRequest, AppToParent } from './server.js'

/** A half-written build directory (`.<id>.<pid>.<ms>`) older than this belongs to a child that died writing it. */
const STALE_TMP_MS = 3_600_000

/**
 * Removes build directories under `<data-dir>/app-builds` but the ones named
 * in `keep`. Called when every child serves a build: the previous build stays
 * (its retiring workers may still import lazily), so does the latest pushed
 * (it may be loading), and so do half-written copies of live children.
 */
export async function pruneBuildDirs(root: string, keep: ReadonlySet<string>, now = Date.now()): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(root)
  } catch {
    return []
  }
  const removed: string[] = []
  for (const name of names) {
    if (keep.has(name) || name === MODULE_MARKER) continue
    const path = join(root, name)
    if (name.startsWith('.') && now - (await stat(path).catch(() => ({ mtimeMs: 0 }))).mtimeMs < STALE_TMP_MS) continue
    await rm(path, { recursive: true, force: true })
    removed.push(name)
  }
  return removed
}

const TABLE_OPS = new Set(['ds.get', 'ds.put', 'ds.delete', 'ds.consume', 'ds.list'])

/** What a child may do to inbound mail records: read one and note its handoff's outcome on it (roles/app/mail-handoff.ts). */
const MAIL_RECORD_OPS = new Set(['ds.get', 'ds.putIf'])

/**
 * A child's datastore op, sent on to the seed only if it is one an app child
 * makes: any op on the app's tables, recording a minted upload token, or
 * noting a mail handoff's outcome.
 */
function relayTableOp(ctx: ParentContext, req: AppSeedRequest): Promise<unknown> {
  const kind = isMap(req.body) ? req.body['kind'] : undefined
  // ctx.sendMail writes outbound messages (records, small raw bytes) and removes them when it could not queue them.
  const outbound = kind === 'mailOutbound' && (req.op === 'ds.put' || req.op === 'ds.delete')
  if (!((TABLE_OPS.has(req.op) && kind === 'appTables') || (req.op === 'ds.put' && kind === 'uploadTokens') || (MAIL_RECORD_OPS.has(req.op) && kind === 'mailInbound') || outbound)) {
    return Promise.reject(createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'op', reason: 'is not relayed: app nodes relay only datastore ops on appTables, upload token records and mail records' }))
  }
  return ctx.seedRequest(req.op, req.body)
}

/**
 * The embedded task queue's ops an app child uses (enqueue, and consuming), enqueueing outbound mail, and an inbound
 * message's handoff (its claims and outcomes, one or several per op: mail-handoff-ops.ts); never counts, dead letters, retries or deletes.
 */
const TASK_OPS = new Set(['tasks.enqueue', 'tasks.lease', 'tasks.extend', 'tasks.settle', 'mailq.enqueue', 'mail.inbound.claim', 'mail.inbound.outcome', 'mail.inbound.claims', 'mail.inbound.outcomes'])

export async function startAppNode(ctx: ParentContext): Promise<Handle> {
  let latest: BuildPush | null = null
  let reported: string | null = null
  let previous: string | null = null
  const served = new Map<number, string>()
  const refused = new Set<string>()
  const stage = startBuildStageReports(ctx)

  // Only once every child has said which build it serves: a node whose second child is still
  // loading its first build must not claim that build (its requests there would get 503).
  function report(): void {
    const ids = new Set(served.values())
    if (ids.size !== 1 || served.size < ctx.config.children) return
    const id = [...ids][0]!
    ctx.setBuild(id)
    if (id === reported) return
    ctx.setBuildRefused(null)
    if (reported !== null) previous = reported
    reported = id
    const staging = stage.staging()
    const keep = new Set([id, ...(previous ? [previous] : []), ...(latest ? [latest.id] : []), ...(staging ? [staging.id] : [])])
    pruneBuildDirs(join(ctx.config.dataDir, 'app-builds'), keep).then(
      (removed) => removed.length > 0 && ctx.log.info({ removed, kept: [...keep] }, 'old app build directories removed'),
      (err: unknown) => ctx.log.warn({ err }, 'could not remove old app build directories'),
    )
  }

  ctx.onPush((push) => {
    if (push.op === 'build' && isBuildPush(push.body)) latest = push.body
  })
  ctx.children.onRequest((_child, body) => {
    if (!isMap(body)) return null
    if (body['t'] === 'current-build') return latest
    if (body['t'] === 'staging-build') return stage.staging()
    if (body['t'] === 'app-seed' && TASK_OPS.has(String(body['op']))) return ctx.seedRequest(String(body['op']), body['body'])
    if (body['t'] === 'app-seed') return relayTableOp(ctx, body as unknown as AppSeedRequest)
    return null
  })
  // Each child's answers with the build it serves (answer-meter.ts); heartbeats carry the sum for the node's build.
  const answers = new Map<number, AppLoad>()
  ctx.setAppLoad(() => {
    if (reported === null) return null
    const sum: AppLoad = { build: reported, requests: 0, errors5xx: 0, crashes: 0, latency: [] }
    for (const load of answers.values()) {
      if (load.build !== reported) continue
      sum.requests += load.requests
      sum.errors5xx += load.errors5xx
      sum.crashes += load.crashes
      load.latency.forEach((n, i) => (sum.latency[i] = (sum.latency[i] ?? 0) + n))
    }
    return sum
  })
  ctx.children.onMessage((child, body) => {
    if (!isMap(body)) return
    const msg = body as AppToParent | AnswersReport
    if (msg.t === 'answers') {
      answers.set(child, msg.load)
    } else if (msg.t === 'serving') {
      served.set(child, msg.id)
      report()
    } else if (msg.t === 'load-failed') {
      // Once per build, not once per child.
      if (refused.has(msg.id)) return
      refused.add(msg.id)
      ctx.log.error({ child, build: msg.id, code: msg.code, serving: [...new Set(served.values())] }, `app build ${msg.id} refused: ${msg.message}`)
      ctx.setBuildRefused({ id: msg.id, code: msg.code, message: msg.message })
      ctx.seedRequest('build.refused', { id: msg.id, code: msg.code, message: msg.message }).catch((err: unknown) =>
        ctx.log.warn({ err, build: msg.id }, 'could not tell the seed about the refused build (its health answer still shows it)'))
    }
  })
  ctx.children.onExit((child) => {
    served.delete(child)
    answers.delete(child)
    report()
  })
  // With --redis, the node needs Redis for every enqueue: while it is down the node is degraded, with the reason.
  const probe = ctx.config.redis === null ? null
    : (await import('../../lib/tasks/redis-status.js')).startRedisProbe(ctx.config.redis, ctx.log, (down) => ctx.setDependency('redis', down))
  return {
    close: async () => void (await probe?.close()),
    destroy: () => void probe?.close(),
  }
}
