/**
 * The app parent: keeps the last build the seed pushed (for children forked
 * later), reports the build every child serves (while children disagree or
 * some have not loaded one yet, the one they last agreed on), and logs a build its children refused (init
 * threw, the module did not load, files missing): the node keeps serving the
 * previous build.
 */
import type { BuildPush } from '../../lib/builds/manifest.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { isMap } from '../../lib/transport/meta-shapes.js'
import { isBuildPush } from './build-push.js'
import type { AppToParent } from './server.js'

export function startAppNode(ctx: ParentContext): Handle {
  let latest: BuildPush | null = null
  const served = new Map<number, string>()
  const refused = new Set<string>()

  // Only once every child has said which build it serves: a node whose second child is still
  // loading its first build must not claim that build (its requests there would get 503).
  function report(): void {
    const ids = new Set(served.values())
    if (ids.size === 1 && served.size >= ctx.config.children) ctx.setBuild([...ids][0]!)
  }

  ctx.onPush((push) => {
    if (push.op === 'build' && isBuildPush(push.body)) latest = push.body
  })
  ctx.children.onRequest((_child, body) => {
    if (isMap(body) && body['t'] === 'current-build') return latest
    return null
  })
  ctx.children.onMessage((child, body) => {
    if (!isMap(body)) return
    const msg = body as AppToParent
    if (msg.t === 'serving') {
      served.set(child, msg.id)
      report()
    } else if (msg.t === 'load-failed') {
      // Once per build, not once per child.
      if (refused.has(msg.id)) return
      refused.add(msg.id)
      ctx.log.error({ child, build: msg.id, code: msg.code, serving: [...new Set(served.values())] }, `app build ${msg.id} refused: ${msg.message}`)
    }
  })
  ctx.children.onExit((child) => {
    served.delete(child)
    report()
  })
  return { close: async () => {}, destroy: () => {} }
}
