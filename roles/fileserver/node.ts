/**
 * The fileserver parent: keeps the last build the seed pushed (for children
 * forked later) and reports to the seed the build every child serves. While
 * children disagree (a switch in progress) it keeps reporting the build they
 * last agreed on, so `admin push-build` returns only once all of them serve
 * the new one.
 *
 * Every request and message a child sends its parent is in one of the two
 * tagged unions below and has its handler in one of the two tables; anything
 * else is an error that is logged (and, for a request, the child's answer).
 */
import { isBuildPush, type BuildPush } from '../../lib/builds/manifest.js'
import { createError, EspraError } from '../../lib/core/errors.js'
import { startBuildStageReports } from '../../lib/process/build-stage.js'
import type { StageToParent } from '../../lib/process/follow-build.js'
import { routeByTag, type TagHandlers } from '../../lib/process/ipc.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import type { AssetsToParent } from './app-assets.js'
import { startCacheParent, type CacheToParent } from './cache-parent.js'
import type { PendingUploads, UploadSeedRequest } from './upload-pending.js'
import type { UploadToParent } from './upload-pipeline.js'
import type { VhostParent, VhostToParent } from './vhost-parent.js'

/** Child → parent requests. */
export type FileserverRequest =
  | { t: 'current-build' }
  | { t: 'staging-build' }
  | Extract<CacheToParent, { t: 'cache-fill' }>
  | UploadSeedRequest
  | VhostToParent

/** Child → parent one-way messages. */
export type FileserverMessage = Extract<CacheToParent, { t: 'cache-hit' }> | AssetsToParent | UploadToParent | StageToParent

export interface FileserverParts {
  readonly uploads: PendingUploads
  readonly vhosts: VhostParent
}

export async function startFileserverNode(ctx: ParentContext, { uploads, vhosts }: FileserverParts): Promise<Handle> {
  const { cache, handle } = await startCacheParent(ctx)
  let latest: BuildPush | null = null
  const served = new Map<number, string>()
  // Two-phase deploys: children stage a build, this tells the seed when all did (or the first refusal).
  const stage = startBuildStageReports(ctx)

  // Only once every child serves the same build: a child still loading must not let push-build return early.
  function report(): void {
    const ids = new Set(served.values())
    if (ids.size === 1 && served.size >= ctx.config.children) ctx.setBuild([...ids][0]!)
  }

  ctx.onPush((push) => {
    if (push.op === 'build' && isBuildPush(push.body)) latest = push.body
  })

  /** What a child sent that no table knows: logged; a request is also refused with the error. */
  function unknown(what: 'request' | 'message', body: unknown, child: number): EspraError {
    const tag = String((body as { t?: unknown } | null)?.t).slice(0, 40)
    ctx.log.error({ child, tag }, `child ${child} sent an unknown ${what} '${tag}'`)
    return createError('ESPRA_ERR_IPC_UNKNOWN', { receiver: 'fileserver parent', what, tag })
  }
  const requests: TagHandlers<FileserverRequest, number> = {
    'current-build': () => latest,
    'staging-build': () => stage.staging(),
    'cache-fill': (msg) => cache.fill(msg.key),
    'upload-seed': (msg) => uploads.seed(msg),
    'vhost-hosts': () => vhosts.hosts(),
    'vhost-lookup': (msg) => vhosts.lookup(msg.key),
  }
  const messages: TagHandlers<FileserverMessage, number> = {
    'cache-hit': (msg) => cache.served(msg.name),
    'serving': (msg, child) => {
      served.set(child, msg.id)
      report()
    },
    'load-failed': (msg, child) => ctx.log.error({ child, build: msg.id, code: msg.code }, `child ${child} cannot load build ${msg.id}: ${msg.message}`),
    'upload-pending': () => uploads.wake(),
    // Two-phase deploys: build-stage.ts listens to these itself.
    'staged': () => {},
    'stage-failed': () => {},
  }
  const request = routeByTag(requests, (body, child) => {
    throw unknown('request', body, child)
  })
  const message = routeByTag(messages, (body, child) => void unknown('message', body, child))
  ctx.children.onRequest((child, body) => request(body, child))
  ctx.children.onMessage((child, body) => void message(body, child))
  ctx.children.onExit((child) => {
    served.delete(child)
    report()
  })
  return handle
}
