/**
 * A mail child's side of the node-wide address limits: it asks the parent
 * (limits-parent.ts) once before greeting a connection and once at each
 * MAIL FROM, and tells it when a connection closes. Nothing per recipient or
 * per line; nothing at all for a limit set to 0.
 *
 * Fails open: when the parent does not answer within LIMIT_ASK_TIMEOUT_MS
 * (or the channel is gone) the connection or message is taken, counted in
 * `espra_mail_inbound_limit_unchecked_total` and logged (at most once per
 * 10 s). These limits are there against one sender's abuse; refusing every
 * sender while the parent is slow would turn that into an outage of all
 * inbound mail (docs/mail.md, "Address limits").
 */
import type { Logger } from '../../lib/core/log.js'
import type { ParentChannel } from '../../lib/process/role.js'
import type { InboundCounters } from './counters.js'

/** Child → parent requests, answered true (counted) or false (over the limit). */
export type LimitsRequest =
  | { t: 'limit-connect'; session: string; address: string }
  | { t: 'limit-message'; address: string }

/** Child → parent one-way: a session asked about with `limit-connect` closed. */
export type LimitsMessage = { t: 'limit-closed'; session: string }

/** The parent answers from memory: anything slower than this is a parent in trouble. */
export const LIMIT_ASK_TIMEOUT_MS = 1000
const WARN_EVERY_MS = 10_000

export interface LimitsClient {
  /** False: the address holds the most connections the node allows. */
  connect(address: string, session: string): Promise<boolean>
  closed(session: string): void
  /** False: the address started the most messages the node allows this minute. */
  message(address: string): Promise<boolean>
}

export interface LimitsClientOptions {
  readonly parent: ParentChannel
  readonly log: Logger
  readonly counters: InboundCounters
  readonly maxConnections: number
  readonly maxPerMinute: number
  readonly timeoutMs?: number
}

export function createLimitsClient(opts: LimitsClientOptions): LimitsClient {
  const { parent, log, counters } = opts
  const timeoutMs = opts.timeoutMs ?? LIMIT_ASK_TIMEOUT_MS
  // Sessions the parent was asked about: only those are told closed.
  const asked = new Set<string>()
  let lastWarn = 0
  let unwarned = 0

  async function ask(limit: 'connections' | 'messages', body: LimitsRequest): Promise<boolean> {
    try {
      return (await parent.request<boolean>(body, timeoutMs)) !== false
    } catch (err) {
      counters.unchecked[limit]++
      unwarned++
      const now = Date.now()
      if (now - lastWarn >= WARN_EVERY_MS) {
        log.warn({ err, limit, unchecked: unwarned }, `the mail parent did not answer a limit check within ${timeoutMs}ms: ${unwarned} connection(s) or message(s) taken unchecked (fail open)`)
        lastWarn = now
        unwarned = 0
      }
      return true
    }
  }

  return {
    connect(address, session) {
      if (opts.maxConnections <= 0) return Promise.resolve(true)
      asked.add(session)
      return ask('connections', { t: 'limit-connect', session, address })
    },
    closed(session) {
      // Told even when the ask failed or was refused: the parent forgets what it did not count, and counted a late one.
      if (asked.delete(session)) parent.send({ t: 'limit-closed', session } satisfies LimitsMessage)
    },
    message(address) {
      if (opts.maxPerMinute <= 0) return Promise.resolve(true)
      return ask('messages', { t: 'limit-message', address })
    },
  }
}
