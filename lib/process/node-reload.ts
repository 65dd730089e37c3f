/**
 * A node parent's side of `node.reload` (docs/meta-protocol.md, "Node
 * control"): the seed pushes `{token}` when an operator asks for this node's
 * children to be replaced (`admin rolling-restart`); the parent runs the same
 * replacement as SIGHUP and answers `node.reloaded` with the token and what
 * happened, once every child has been replaced (or could not be).
 */
import type { Logger } from '../core/log.js'
import { isMap } from '../transport/meta-shapes.js'
import type { ReloadSummary } from './supervisor.js'

/** The seed → node push that asks for a reload. */
export const RELOAD_PUSH = 'node.reload'

export interface NodeReloadDeps {
  readonly log: Logger
  /** Starts the replacement; a string says why it cannot run (starting, stopping, no children). */
  reload(): Promise<ReloadSummary> | string
  seedRequest(op: string, body: unknown): Promise<unknown>
}

/** Handles one `node.reload` push; never throws (a bad push is logged and dropped). */
export function onReloadPush(body: unknown, deps: NodeReloadDeps): void {
  const token = isMap(body) ? body['token'] : undefined
  if (typeof token !== 'string') return void deps.log.warn({ body }, 'ignoring a node.reload push without a token')
  deps.log.info('the seed asks for every child to be replaced (admin rolling-restart)')
  const started = deps.reload()
  const outcome: Promise<ReloadSummary> = typeof started === 'string'
    ? Promise.resolve({ replaced: 0, failed: [{ child: -1, code: 'ESPRA_ERR_NODE_RELOAD_UNSUPPORTED', message: started }] })
    : started.catch((err: unknown) => ({ replaced: 0, failed: [{ child: -1, code: 'ESPRA_ERR_INTERNAL', message: String((err as Error)?.message ?? err) }] }))
  void outcome
    .then((summary) => deps.seedRequest('node.reloaded', { token, ...summary }))
    .catch((err: unknown) => deps.log.warn({ err }, 'could not tell the seed the reload finished (the operator sees a timeout)'))
}
