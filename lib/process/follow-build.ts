/**
 * The child side of serving the seed's builds, shared by the roles that do
 * (fileserver, app). A deploy is two-phase (docs/meta-protocol.md, "Builds"):
 * `build.stage` loads a build beside the current one and says to the parent
 * whether it is ready (`staged`) or why not (`stage-failed`, code and
 * message); `build` makes it current (a swap when it is staged here, else a
 * whole load: a child or node that missed the staging); `build.cancel` drops
 * it. A child forked after the last push (a restart, a reload) asks the
 * parent for the current build and for one still staging. A staged build
 * outlives a push of the build already current (a new leader resumes its
 * deploy or cancels it), and staging the same build again reuses its load.
 */
import { isBuildId, isBuildPush, type BuildPush } from '../builds/manifest.js'
import { toWire } from '../core/errors.js'
import { isMap } from '../transport/meta-shapes.js'
import type { ChildContext } from './role.js'

/** How long a new child waits for the build its parent knows before it listens anyway (and says so). */
export const FIRST_BUILD_WAIT_MS = 60_000

/** Child → parent, about a build the seed asked to stage. */
export type StageToParent = { t: 'staged'; id: string } | { t: 'stage-failed'; id: string; code: string; message: string }

/** What a role does with builds; it reports `serving` / `load-failed` itself. */
export interface BuildFollower {
  /** Loads the build and makes it current as soon as it is loaded. */
  apply(push: BuildPush): void
  /** Loads the build beside the current one; resolves when a swap to it is instant; rejects with the coded reason. */
  stage(push: BuildPush): Promise<void>
  /** Makes the staged build `id` current now; false when it is not staged here. */
  activate(id: string): boolean
  /** Drops the staged (or staging) build `id`. */
  discard(id: string): void
}

/**
 * Follows the seed's builds through `follower`. Resolves with the parent's
 * current build (null: the parent knows none, or could not be asked) once
 * `follower.apply` has been called with it, so a child can wait for that load
 * before it listens ({@link waitForFirstBuild}).
 */
export function followBuild(ctx: ChildContext, follower: BuildFollower): Promise<BuildPush | null> {
  let pushed = false
  /** The build current here: the last one pushed, or the parent's at start. */
  let current: string | null = null
  /**
   * The build the seed asked to stage and has neither activated nor cancelled, and its load. A new
   * leader resumes a deploy by asking again (docs/postgres.md): the same build is answered from the
   * same load, so nothing is loaded twice. A load that failed is tried again when asked again.
   */
  let staged: { id: string; load: Promise<void> } | null = null
  const stage = (push: BuildPush) => {
    if (staged?.id !== push.id) {
      const mine: { id: string; load: Promise<void> } = { id: push.id, load: follower.stage(push) }
      staged = mine
      mine.load.catch(() => {
        if (staged === mine) staged = null
      })
    }
    staged.load.then(
      () => ctx.parent.send({ t: 'staged', id: push.id } satisfies StageToParent),
      (err: unknown) => {
        const wire = toWire(err)
        ctx.parent.send({ t: 'stage-failed', id: push.id, code: wire.code, message: wire.message } satisfies StageToParent)
      },
    )
  }
  ctx.onPush((push) => {
    if (push.op === 'build.stage' && isBuildPush(push.body)) return stage(push.body)
    if (push.op === 'build.cancel' && isMap(push.body) && isBuildId(push.body['id'])) {
      if (push.body['id'] === staged?.id) staged = null
      return follower.discard(push.body['id'])
    }
    if (push.op !== 'build' || !isBuildPush(push.body)) return
    pushed = true
    const id = push.body.id
    // Another build made current while one stages: that round is over, and no cancel may come for it.
    // The build already current pushed again (this node reconnected, maybe to a new leader) says
    // nothing about the staged one: the leader resumes its deploy or cancels it.
    if (staged !== null && staged.id !== id && id !== current) follower.discard(staged.id)
    if (staged === null || staged.id === id || id !== current) staged = null
    current = id
    if (!follower.activate(id)) follower.apply(push.body)
  })
  const first = ctx.parent.request<BuildPush | null>({ t: 'current-build' }).then(
    (build) => {
      if (build === null || !isBuildPush(build)) return null
      if (!pushed) {
        current = build.id
        follower.apply(build)
      }
      return build
    },
    (err: unknown) => {
      ctx.log.warn({ err }, 'could not ask the parent for the current build')
      return null
    },
  )
  ctx.parent.request<BuildPush | null>({ t: 'staging-build' }).then(
    (build) => {
      if (build !== null && isBuildPush(build)) stage(build)
    },
    (err: unknown) => ctx.log.warn({ err }, 'could not ask the parent for a build staging'),
  )
  return first
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
