/**
 * The parent side of a two-phase deploy, shared by the roles that serve
 * builds (fileserver, app): the seed's `build.stage` reaches every child (the
 * parent relays pushes); each child answers `staged` or `stage-failed`
 * (follow-build.ts). Once every child staged, the node tells the seed
 * `build.staged`; at the first child that failed, `build.refused` with that
 * child's code and message. `build.cancel`, or the activation (`build`),
 * ends the round. A child forked meanwhile asks for the build staging
 * (`staging()`) and stages it too. "Every child" is every child alive: a
 * crash-looping child must not block deploys (it loads the current build
 * when it starts again), so a child exiting can complete the round.
 */
import { isBuildId, isBuildPush, type BuildPush } from '../builds/manifest.js'
import { isMap } from '../transport/meta-shapes.js'
import type { StageToParent } from './follow-build.js'
import type { ParentContext } from './role.js'

export interface BuildStageReports {
  /** The build the seed asked to stage and has neither activated nor cancelled (null: none). */
  staging(): BuildPush | null
}

interface Round {
  readonly push: BuildPush
  readonly staged: Set<number>
  answered: boolean
}

export function startBuildStageReports(ctx: ParentContext): BuildStageReports {
  let round: Round | null = null

  function answer(op: 'build.staged' | 'build.refused', body: Record<string, unknown>): void {
    ctx.seedRequest(op, body).catch((err: unknown) =>
      ctx.log.warn({ err, build: body['id'] }, `could not tell the seed ${op} (it will count this node as not answering)`))
  }

  ctx.onPush((push) => {
    if (push.op === 'build.stage' && isBuildPush(push.body)) {
      round = { push: push.body, staged: new Set(), answered: false }
      ctx.log.info({ build: push.body.id }, 'staging build')
    } else if (push.op === 'build.cancel' && isMap(push.body) && push.body['id'] === round?.push.id) {
      round = null
    } else if (push.op === 'build') {
      // Activated, or another build made current (after a seed restart): either way this round is over.
      round = null
    }
  })
  ctx.children.onMessage((child, body) => {
    if (!isMap(body) || !isBuildId(body['id'])) return
    const msg = body as StageToParent
    if ((msg.t !== 'staged' && msg.t !== 'stage-failed') || round === null || msg.id !== round.push.id || round.answered) return
    if (msg.t === 'stage-failed') {
      round.answered = true
      ctx.log.error({ child, build: msg.id, code: msg.code }, `build ${msg.id} refused at staging: ${msg.message}`)
      ctx.setBuildRefused({ id: msg.id, code: msg.code, message: msg.message })
      return answer('build.refused', { id: msg.id, code: msg.code, message: msg.message })
    }
    round.staged.add(child)
    complete(round)
  })
  function complete(r: Round): void {
    if (r.answered || r.staged.size === 0 || r.staged.size < ctx.childrenAlive()) return
    r.answered = true
    ctx.log.info({ build: r.push.id, children: r.staged.size }, 'build staged in every child')
    answer('build.staged', { id: r.push.id })
  }
  ctx.children.onExit((child) => {
    if (round === null) return
    round.staged.delete(child)
    // The supervisor counts the child gone after this runs: check again once it has.
    const r = round
    setImmediate(() => complete(r))
  })
  return { staging: () => round?.push ?? null }
}
