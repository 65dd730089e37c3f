/**
 * The child side of serving the seed's current build, shared by the roles
 * that do (fileserver, app): apply every build the seed pushes and, for a
 * child forked after the last push (a restart, a reload), ask the parent for
 * the build it kept.
 */
import { isBuildPush, type BuildPush } from '../builds/manifest.js'
import type { ChildContext } from './role.js'

/** How long a new child waits for the build its parent knows before it listens anyway (and says so). */
export const FIRST_BUILD_WAIT_MS = 60_000

/**
 * Applies every build pushed and, unless a push came first, the one the
 * parent kept. Resolves with the parent's build (null: the parent knows none,
 * or could not be asked) once `apply` has been called with it, so a child can
 * wait for that load before it listens ({@link waitForFirstBuild}).
 */
export function followBuild(ctx: ChildContext, apply: (push: BuildPush) => void): Promise<BuildPush | null> {
  let pushed = false
  ctx.onPush((push) => {
    if (push.op !== 'build' || !isBuildPush(push.body)) return
    pushed = true
    apply(push.body)
  })
  return ctx.parent.request<BuildPush | null>({ t: 'current-build' }).then(
    (build) => {
      if (build === null || !isBuildPush(build)) return null
      if (!pushed) apply(build)
      return build
    },
    (err: unknown) => {
      ctx.log.warn({ err }, 'could not ask the parent for the current build')
      return null
    },
  )
}

/**
 * A child must not accept connections before it can answer them as the child
 * it replaces does: this waits until `settled` (the first build's load
 * succeeded or was refused), at most `boundMs`. Past the bound the child
 * listens without it, with one warning, rather than never.
 */
export async function waitForFirstBuild(ctx: ChildContext, build: BuildPush | null, settled: Promise<void>, boundMs = FIRST_BUILD_WAIT_MS): Promise<void> {
  if (build === null) return
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), boundMs)))
  const outcome = await Promise.race([settled, bound])
  clearTimeout(timer)
  if (outcome === 'late') ctx.log.warn({ build: build.id, waitedMs: boundMs }, `build ${build.id} not loaded after ${boundMs}ms: listening without it (requests needing it are refused until it loads)`)
}
