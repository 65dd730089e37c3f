/**
 * Requests of the `admin` commands to the seed that leads, over a link that
 * follows the leader (`connect(..., lasting)`, several seeds on PostgreSQL):
 * what a request gets when the leader went away under it ({@link FAILOVER}),
 * and {@link LeaderCalls}, which asks such a request again of the next
 * leader. `admin push-build` uses it; `admin rolling-restart` has its own
 * retry policy (SeedCalls: the caller's deadline, `ESPRA_ERR_NODE_UNKNOWN`
 * after a failover, a check for a request already applied) on the same
 * {@link FAILOVER} codes.
 */
import type { EspraError } from '../../core/errors.js'
import type { MetaClient } from '../../transport/meta-client.js'

/** How long one request to the seed may take. */
export const REQUEST_TIMEOUT_MS = 30_000
/** What a request gets when the leader went away under it: asked again of the next leader. */
export const FAILOVER: ReadonlySet<string> = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_SEED_NOT_LEADER'])
/** How long a push waits for a new leader after losing its own. */
const FAILOVER_WAIT_MS = 60_000
/** How often a request that met a failover is asked again. */
const POLL_MS = 200

const say = (line: string) => process.stderr.write(`${line}\n`)

/**
 * Requests to the leader over a link that follows it (`connect(..., lasting)`): one that meets a
 * failover is asked again until a leader answers, at most {@link FAILOVER_WAIT_MS} after the loss.
 * Only for requests that are safe to send twice; `build.commit` is not (push-build-upload.ts `commitOnce`).
 */
export class LeaderCalls {
  constructor(private readonly client: MetaClient) {}

  async request<R>(op: string, body: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<R> {
    let deadline: number | null = null
    for (;;) {
      try {
        return await this.client.request<R>(op, body, timeoutMs)
      } catch (err) {
        if (!isFailover(err)) throw err
        if (deadline === null) {
          deadline = Date.now() + FAILOVER_WAIT_MS
          say(`the leader went away (${(err as EspraError).code}); asking the next one`)
        }
        if (Date.now() > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
    }
  }
}

/** A failover code, unless the seed said it stopped for good (`details.stopped`). */
export const isFailover = (err: unknown): boolean => {
  const { code, details } = err as EspraError
  return FAILOVER.has(code) && (details as { stopped?: unknown } | undefined)?.stopped !== true
}
