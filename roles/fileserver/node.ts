/**
 * The fileserver parent: keeps the last build the seed pushed (for children
 * forked later) and reports to the seed the build every child serves. While
 * children disagree (a switch in progress) it keeps reporting the build they
 * last agreed on, so `admin push-build` returns only once all of them serve
 * the new one.
 */
import { isBuildPush, type BuildPush } from '../../lib/builds/manifest.js'
import { startBuildStageReports } from '../../lib/process/build-stage.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import type { AssetsToParent } from './app-assets.js'
import { startCacheParent } from './disk-cache.js'

/** `relay`: another part's answer to a child request it recognises (undefined: not its own), e.g. uploads' seed ops. */
export async function startFileserverNode(ctx: ParentContext, relay?: (body: unknown) => unknown): Promise<Handle> {
  const cache = await startCacheParent(ctx)
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
  ctx.children.onRequest((_child, body) => {
    if (isMap(body) && body['t'] === 'current-build') return latest
    if (isMap(body) && body['t'] === 'staging-build') return stage.staging()
    return cache.onRequest(body) ?? relay?.(body) ?? null
  })
  ctx.children.onMessage((child, body) => {
    const msg = body as AssetsToParent
    if (!isMap(body)) return
    if (cache.onMessage(body)) return
    if (msg.t === 'serving') {
      served.set(child, msg.id)
      report()
    } else if (msg.t === 'load-failed') {
      ctx.log.error({ child, build: msg.id, code: msg.code }, `child ${child} cannot load build ${msg.id}: ${msg.message}`)
    }
  })
  ctx.children.onExit((child) => {
    served.delete(child)
    report()
  })
  return cache.handle
}
