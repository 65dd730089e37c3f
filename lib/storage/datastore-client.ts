/**
 * The Datastore over the meta port: what nodes other than the seed use to
 * reach the seed's embedded store (ops `ds.get`, `ds.put`, `ds.delete`,
 * `ds.list`, `ds.consume`, `ds.putIf`; docs/meta-protocol.md). Input is checked here
 * with the same rules as the embedded store (`ESPRA_ERR_DATASTORE_INVALID`)
 * before anything is sent; the seed checks again.
 *
 * Riding over a failover: an op that fails because the link dropped or
 * is down (`ESPRA_ERR_META_CLOSED`) or reached a seed that does not lead
 * (`ESPRA_ERR_SEED_NOT_LEADER`) is sent again (lib/transport/resend.ts)
 * until {@link DATASTORE_RETRY_WINDOW_MS} has passed since it was first
 * sent; then its last error is thrown. `get`, `list`, `put` and `delete`
 * as they are (a repetition is harmless); `consume` and `putIf` with an op
 * id drawn once per call (lib/storage/op-id.ts), so the seed applies them
 * once and a repeat gets the first attempt's answer. A link closed on
 * purpose (the node stopping; an error with `details.stopped`) or this
 * store closed ends the waiting at once.
 */
import type { MetaClient } from '../transport/meta-client.js'
import { createResender } from '../transport/resend.js'
import { newOpId } from './op-id.js'
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

export interface DatastoreClientOptions {
  /**
   * How long an op is sent again after the link
   * dropped ({@link DATASTORE_RETRY_WINDOW_MS} by default); 0 fails at once
   * (a caller that must answer fast, such as the admin API answering 503).
   */
  readonly retryWindowMs?: number
}

/** `link` is any connected meta client (a node's seed link). Closing this store leaves the link open. */
export function createDatastoreClient(link: Pick<MetaClient, 'request'>, options: DatastoreClientOptions = {}): Datastore {
  const windowMs = options.retryWindowMs ?? DATASTORE_RETRY_WINDOW_MS
  const resender = createResender(link)
  const repeatable = <T>(op: string, body: unknown) => resender.send<T>(op, body, windowMs)

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
      return (await repeatable<{ value: DatastoreValue | null }>('ds.consume', { ...target(kind, key), opId: newOpId() })).value
    },
    async putIf(kind, key, value, match) {
      const body = { ...target(kind, key), value, match, opId: newOpId() }
      check(valueProblem(value))
      check(matchProblem(match))
      return (await repeatable<{ written: boolean }>('ds.putIf', body)).written
    },
    async list(kind, options: ListOptions = {}) {
      check(kindProblem(kind))
      check(listProblem(options))
      return repeatable<DatastorePage>('ds.list', { ...options, kind })
    },
    async close() {
      resender.close()
    },
  }
}
