/**
 * The seed's side of a two-phase deploy (docs/meta-protocol.md, "Builds"):
 * one staging round at a time. A round sends `build.stage` to every target
 * (the app nodes and fileservers subscribed to builds, not draining), and
 * collects each node's answer (`build.staged`, or `build.refused` with its
 * code and message). When every target staged, the round is `activated` (the
 * caller makes the build current and pushes `build`); when any refused, or
 * some did not answer by the deadline (`--init-timeout` plus a margin for
 * fetching files), it is `refused` and every target gets `build.cancel`. A
 * newer round (a push, a rollback) replaces one still staging the same way.
 * A target that disconnects leaves the round: it gets the current build
 * when it subscribes again, like any node that joins later.
 */
import type { BuildPush } from '../lib/builds/manifest.js'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { encodeMessage } from '../lib/transport/meta-frames.js'

export type NodeStageState = 'staging' | 'staged' | 'refused'

/** One node's part in a round, as `build.status` and `build.list` show it. */
export interface StageNode {
  readonly node: string
  readonly role: string
  state: NodeStageState
  code?: string
  message?: string
}

export type RoundOutcome = 'activated' | 'refused' | 'replaced'

export interface StageRound {
  readonly push: BuildPush
  readonly startedAt: number
  readonly deadline: number
  readonly nodes: Map<string, StageNode>
  outcome: RoundOutcome | null
}

export interface StageTarget {
  readonly peer: MetaPeer
  readonly node: string
  readonly role: string
}

export interface BuildStagingOptions {
  readonly log: Logger
  /** How long a round waits for every answer. */
  readonly deadlineMs: number
  /** Runs once per round, synchronously when it ends (activated, refused or replaced). */
  readonly onDone: (round: StageRound) => void
}

export interface BuildStaging {
  /** Starts a round for `push` (replacing one still staging) and returns it; with no targets it is activated at once. */
  start(push: BuildPush, targets: readonly StageTarget[]): StageRound
  /** The round staging now (null: none). */
  active(): StageRound | null
  /** A node's answer; throws `ESPRA_ERR_BUILD_INVALID` when no round asks that node about `id`. */
  answer(peer: MetaPeer, id: string, answer: { state: 'staged' } | { state: 'refused'; code: string; message: string }): void
  /** Whether `id` is staging on that node (a `build.refused` for it is a staging answer). */
  asks(node: string, id: string): boolean
  /** A connection closed: its node leaves the round. */
  peerGone(peer: MetaPeer): void
  close(): void
}

export function createBuildStaging(opts: BuildStagingOptions): BuildStaging {
  const { log } = opts
  let round: StageRound | null = null
  let peers = new Map<string, MetaPeer>()
  let timer: NodeJS.Timeout | null = null

  function end(r: StageRound, outcome: RoundOutcome): void {
    if (r !== round) return
    round = null
    if (timer) clearTimeout(timer)
    timer = null
    r.outcome = outcome
    if (outcome !== 'activated') {
      const frame = encodeMessage('build.cancel', { id: r.push.id })
      for (const peer of peers.values()) peer.session.sendEncoded(frame)
    }
    peers = new Map()
    const refused = [...r.nodes.values()].filter((n) => n.state === 'refused')
    if (outcome === 'activated') log.info({ build: r.push.id, nodes: r.nodes.size, ms: Date.now() - r.startedAt }, `build ${r.push.id} staged everywhere: activating`)
    else log.warn({ build: r.push.id, outcome, refused }, `build ${r.push.id} ${outcome}: current nowhere`)
    opts.onDone(r)
  }

  function settle(r: StageRound): void {
    const states = [...r.nodes.values()].map((n) => n.state)
    if (states.includes('staging')) return
    end(r, states.includes('refused') ? 'refused' : 'activated')
  }

  return {
    start(push, targets) {
      if (round !== null) end(round, 'replaced')
      const r: StageRound = { push, startedAt: Date.now(), deadline: Date.now() + opts.deadlineMs, nodes: new Map(), outcome: null }
      round = r
      peers = new Map(targets.map((t) => [t.node, t.peer]))
      const frame = encodeMessage('build.stage', push)
      for (const t of targets) {
        r.nodes.set(t.node, { node: t.node, role: t.role, state: 'staging' })
        t.peer.session.sendEncoded(frame)
      }
      log.info({ build: push.id, nodes: [...r.nodes.keys()], deadlineMs: opts.deadlineMs }, `build ${push.id} staging`)
      timer = setTimeout(() => {
        for (const n of r.nodes.values()) {
          if (n.state !== 'staging') continue
          n.state = 'refused'
          n.code = 'ESPRA_ERR_BUILD_STAGE_TIMEOUT'
          n.message = `did not say whether it staged build ${push.id} within ${opts.deadlineMs} ms`
        }
        settle(r)
      }, opts.deadlineMs)
      timer.unref()
      settle(r)
      return r
    },
    active: () => round,
    asks: (node, id) => round?.push.id === id && round.nodes.get(node)?.state === 'staging',
    answer(peer, id, reply) {
      const node = peer.nodeId === null ? undefined : round?.nodes.get(peer.nodeId)
      if (round === null || round.push.id !== id || node === undefined || peers.get(node.node) !== peer) {
        throw createError('ESPRA_ERR_BUILD_INVALID', { field: 'id', reason: `${id} is not staging on this connection's node`, id })
      }
      if (node.state !== 'staging') return
      node.state = reply.state
      if (reply.state === 'refused') {
        node.code = reply.code
        node.message = reply.message
      }
      settle(round)
    },
    peerGone(peer) {
      const node = [...peers].find(([, p]) => p === peer)?.[0]
      if (round === null || node === undefined || round.nodes.get(node)?.state !== 'staging') return
      log.warn({ build: round.push.id, node }, `${node} left while staging build ${round.push.id}: it gets the build if it comes back`)
      round.nodes.delete(node)
      peers.delete(node)
      settle(round)
    },
    close() {
      if (timer) clearTimeout(timer)
      round = null
    },
  }
}
