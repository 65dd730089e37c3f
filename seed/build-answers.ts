/**
 * What app nodes and fileservers answer about builds (docs/meta-protocol.md,
 * "Builds"): `build.staged` and `build.refused`. An answer about the round
 * staging that build goes to the round (build-staging.ts); a canary's goes to
 * its watch (canary-deploys.ts); a refusal outside any round (a straight
 * load) is kept in build-refusals.ts.
 */
import { isBuildId } from '../lib/builds/manifest.js'
import type { Logger } from '../lib/core/log.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { body, invalid } from './build-input.js'
import type { BuildRefusals } from './build-refusals.js'
import type { BuildStaging } from './build-staging.js'
import type { CanaryDeploys } from './canary-deploys.js'

export interface BuildAnswersOptions {
  readonly log: Logger
  readonly staging: BuildStaging
  readonly canaries: CanaryDeploys
  readonly refusals: BuildRefusals
}

export interface BuildAnswers {
  /** `build.refused`: init threw or files were missing on that node. */
  refused(raw: unknown, peer: MetaPeer): Promise<Record<string, never>>
  /** `build.staged`: that node holds the build ready to be made current. */
  staged(raw: unknown, peer: MetaPeer): Promise<Record<string, never>>
}

export function createBuildAnswers({ log, staging, canaries, refusals }: BuildAnswersOptions): BuildAnswers {
  return {
    async refused(raw, peer) {
      const b = body(raw)
      if (peer.nodeId === null) throw invalid('peer', 'must be a registered node')
      if (!isBuildId(b['id'])) throw invalid('id', 'must be a build id such as b12')
      if (typeof b['code'] !== 'string' || !/^ESPRA_ERR_[A-Z_]{1,64}$/.test(b['code'])) throw invalid('code', 'must be an ESPRA_ERR_* code')
      if (typeof b['message'] !== 'string') throw invalid('message', 'must be text')
      canaries.refused(peer.nodeId, b['id'], b['code'], b['message'].slice(0, 500))
      // A refusal while staging is that node's answer to the round; one later (a straight load) is kept here.
      if (staging.asks(peer.nodeId, b['id'])) {
        staging.answer(peer, b['id'], { state: 'refused', code: b['code'], message: b['message'].slice(0, 500) })
        log.warn({ build: b['id'], node: peer.nodeId, code: b['code'] }, `build ${b['id']} refused by ${peer.nodeId} while staging: ${b['message'].slice(0, 500)}`)
        return {}
      }
      refusals.add(b['id'], peer.nodeId, { code: b['code'], message: b['message'].slice(0, 500) })
      log.warn({ build: b['id'], node: peer.nodeId, code: b['code'] }, `build ${b['id']} refused by ${peer.nodeId}: ${b['message'].slice(0, 500)}`)
      return {}
    },

    async staged(raw, peer) {
      const b = body(raw)
      if (peer.kind !== 'node' || peer.nodeId === null) throw invalid('peer', 'must be a registered node')
      if (!isBuildId(b['id'])) throw invalid('id', 'must be a build id such as b12')
      // A canary staged the previous build again, to go back to it at once: nothing to answer.
      if (canaries.standby(peer.nodeId, b['id'])) return {}
      staging.answer(peer, b['id'], { state: 'staged' })
      return {}
    },
  }
}
