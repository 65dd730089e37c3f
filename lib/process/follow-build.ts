/**
 * The child side of serving the seed's current build, shared by the roles
 * that do (fileserver, app): apply every build the seed pushes and, for a
 * child forked after the last push (a restart, a reload), ask the parent for
 * the build it kept.
 */
import { isBuildPush, type BuildPush } from '../builds/manifest.js'
import type { ChildContext } from './role.js'

export function followBuild(ctx: ChildContext, apply: (push: BuildPush) => void): void {
  let pushed = false
  ctx.onPush((push) => {
    if (push.op !== 'build' || !isBuildPush(push.body)) return
    pushed = true
    apply(push.body)
  })
  ctx.parent.request<BuildPush | null>({ t: 'current-build' }).then(
    (build) => {
      if (!pushed && build !== null && isBuildPush(build)) apply(build)
    },
    (err: unknown) => ctx.log.warn({ err }, 'could not ask the parent for the current build'),
  )
}
