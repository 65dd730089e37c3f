/**
 * The Datastore over the meta port: what nodes other than the seed use to
 * reach the seed's embedded store (ops `ds.get`, `ds.put`, `ds.delete`,
 * `ds.list`, `ds.consume`, `ds.putIf`; docs/meta-protocol.md). Input is checked here
 * with the same rules as the embedded store (`ESPRA_ERR_DATASTORE_INVALID`)
 * before anything is sent; the seed checks again.
 *
 * Riding over a failover: an op whose repetition is harmless (`get`, `list`,
 * `put` of the same value, `delete`) that fails because the link dropped or
 * is down (`ESPRA_ERR_META_CLOSED`) or reached a seed that does not lead
 * (`ESPRA_ERR_SEED_NOT_LEADER`) is sent again, with a backoff from 100 ms to
 * 1 s, until {@link DATASTORE_RETRY_WINDOW_MS} has passed since it was first
 * sent; then its last error is thrown. `consume` and `putIf` are never sent
 * again: their first attempt may have applied, and only the caller knows
 * what to do then. A link closed on purpose (the node stopping; an error
 * with `details.stopped`) or this store closed ends the waiting at once.
 */
import type { EspraError } from '../core/errors.js'
import type { MetaClient } from '../transport/meta-client.js'
import {
  check, keyProblem, kindProblem, listProblem, matchProblem, valueProblem,
  type Datastore, type DatastoreKind, type DatastorePage, type DatastoreValue, type ListOptions,
} from './datastore.js'

/**
 * How long a repeatable op keeps being sent again after the link dropped:
 * long enough for a leader failover (the lease runs out within 2 s, a follower
 * takes it within one more look, the nodes reconnect; the new leader's grace
 * is 6 s but every seed serves `ds.*` at once), short enough that a caller
 * with a deadline of its own still hears of a real outage.
 */
export const DATASTORE_RETRY_WINDOW_MS = 10_000
const RETRY_FIRST_MS = 100
const RETRY_MAX_MS = 1000

/** Failures after which the op was not applied by a seed that is still there: the next link may take it. */
const RETRYABLE = new Set(['ESPRA_ERR_META_CLOSED', 'ESPRA_ERR_SEED_NOT_LEADER'])

export interface DatastoreClientOptions {
  /**
   * How long `get`, `list`, `put` and `delete` are sent again after the link
   * dropped ({@link DATASTORE_RETRY_WINDOW_MS} by default); 0 fails at once
   * (a caller that must answer fast, such as the admin API answering 503).
   */
  readonly retryWindowMs?: number
}

/** `link` is any connected meta client (a node's seed link). Closing this store leaves the link open. */
export function createDatastoreClient(link: Pick<MetaClient, 'request'>, options: DatastoreClientOptions = {}): Datastore {
  const windowMs = options.retryWindowMs ?? DATASTORE_RETRY_WINDOW_MS
  let closed = false
  // Ops waiting to be sent again: woken (and ended) by close().
  const waiting = new Set<() => void>()

  const pause = (ms: number) => new Promise<void>((resolve) => {
    const wake = () => {
      clearTimeout(timer)
      waiting.delete(wake)
      resolve()
    }
    const timer = setTimeout(wake, ms)
    waiting.add(wake)
  })

  /** Sends `op` until it is answered, fails otherwise than by the link, or the window has passed. */
  async function repeatable<T>(op: string, body: unknown): Promise<T> {
    const started = Date.now()
    for (let attempt = 1; ; attempt++) {
      try {
        return await link.request<T>(op, body)
      } catch (err) {
        const { code, details } = err as EspraError
        const stopped = (details as { stopped?: unknown } | undefined)?.stopped === true
        if (!RETRYABLE.has(code) || stopped || closed) throw err
        const left = started + windowMs - Date.now()
        if (left <= 0) throw err
        // Equal jitter: many nodes that lost one seed do not come back in step.
        const step = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(attempt - 1, 10))
        await pause(Math.min(left, step / 2 + Math.random() * (step / 2)))
        if (closed) throw err
      }
    }
  }

  const target = (kind: DatastoreKind, key: string) => {
    check(kindProblem(kind))
    check(keyProblem(key))
    return { kind, key }
  }
  return {
    async get(kind, key) {
      return (await repeatable<{ value: DatastoreValue | null }>('ds.get', target(kind, key))).value
    },
    async put(kind, key, value) {
      const body = { ...target(kind, key), value }
      check(valueProblem(value))
      await repeatable('ds.put', body)
    },
    /** Sent again after a dropped link: a delete the first attempt already applied then answers false. */
    async delete(kind, key) {
      return (await repeatable<{ deleted: boolean }>('ds.delete', target(kind, key))).deleted
    },
    async consume(kind, key) {
      return (await link.request<{ value: DatastoreValue | null }>('ds.consume', target(kind, key))).value
    },
    async putIf(kind, key, value, match) {
      const body = { ...target(kind, key), value, match }
      check(valueProblem(value))
      check(matchProblem(match))
      return (await link.request<{ written: boolean }>('ds.putIf', body)).written
    },
    async list(kind, options: ListOptions = {}) {
      check(kindProblem(kind))
      check(listProblem(options))
      return repeatable<DatastorePage>('ds.list', { ...options, kind })
    },
    async close() {
      closed = true
      for (const wake of [...waiting]) wake()
    },
  }
}
