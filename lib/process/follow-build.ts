/**
 * The child side of serving the seed's builds, shared by the roles that do
 * (fileserver, app). A deploy is two-phase (docs/meta-protocol.md, "Builds"):
 * `build.stage` loads a build beside the current one and says to the parent
 * whether it is ready (`staged`) or why not (`stage-failed`, code and
 * message); `build` makes it current (a swap when it is staged here, else a
 * whole load: a child or node that missed the staging); `build.cancel` drops
 * it. A child forked after the last push (a restart, a reload) asks the
 * parent for the current build and for one still staging.
 */
import { isBuildId, isBuildPush, type BuildPush } from '../builds/manifest.js'
import { toWire } from '../core/errors.js'
import { isMap } from '../transport/meta-shapes.js'
import type { ChildContext } from './role.js'

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

export function followBuild(ctx: ChildContext, follower: BuildFollower): void {
  let pushed = false
  /** The build the seed asked to stage and has neither activated nor cancelled. */
  let staging: string | null = null
  const stage = (push: BuildPush) => {
    staging = push.id
    follower.stage(push).then(
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
      if (push.body['id'] === staging) staging = null
      return follower.discard(push.body['id'])
    }
    if (push.op !== 'build' || !isBuildPush(push.body)) return
    pushed = true
    // Another build made current while one stages: its round is over (the seed restarted, or this node
    // reconnected and left the round), and no cancel will come for it.
    if (staging !== null && staging !== push.body.id) follower.discard(staging)
    staging = null
    if (!follower.activate(push.body.id)) follower.apply(push.body)
  })
  ctx.parent.request<BuildPush | null>({ t: 'current-build' }).then(
    (build) => {
      if (!pushed && build !== null && isBuildPush(build)) follower.apply(build)
    },
    (err: unknown) => ctx.log.warn({ err }, 'could not ask the parent for the current build'),
  )
  ctx.parent.request<BuildPush | null>({ t: 'staging-build' }).then(
    (build) => {
      if (build !== null && isBuildPush(build)) stage(build)
    },
    (err: unknown) => ctx.log.warn({ err }, 'could not ask the parent for a build staging'),
  )
}
