/**
 * The admin API's own link to the seed: an authenticated `admin`-kind meta
 * client (the cluster secret, the `--seed` list, reconnecting with backoff),
 * plus what the API reaches over it: the datastore, the task queue and the
 * outbound mail queue (Redis for both when the node runs with `--redis`).
 *
 * Each child opens one, rather than the parent opening one and relaying over
 * the role IPC: the work an API call starts (a rolling restart polling for
 * minutes, an SSE stream of cluster events, datastore scans of the mail
 * queue) then stays in the process that serves the request, with no second
 * hop copying every frame and no relay protocol to keep in step with the
 * meta ops. Operators are few, so N links to the seed cost nothing. What
 * children must share (idempotency keys, rolling-restart progress, the audit
 * log) lives in the seed's datastore, and the failed-auth counts in the
 * parent (roles/admin/api-auth-limit.ts).
 */
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import { openOutboundQueue } from '../../lib/mail/outbound-queue.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import { createMetaClient, type MetaClient } from '../../lib/transport/meta-client.js'
import type { NodeEvent } from '../../lib/transport/meta-shapes.js'

/** Push-build chunks and mail records can be large: the CLI's own frame limit. */
const ADMIN_MAX_FRAME = 16 * 1024 ** 2

export interface AdminSeedLink {
  readonly client: MetaClient
  readonly datastore: Datastore
  /** The app's task queue (dead letters, retries, inbound mail handoffs). */
  readonly tasks: TaskQueue
  /** The outbound mail queue. */
  readonly mailQueue: TaskQueue
  /** Cluster events (`joined`, `left`, `health`) as the seed pushes them; subscribed again on every reconnect. */
  onEvent(listener: (event: NodeEvent) => void): () => void
  /** Link up or down (SSE streams say so). */
  onLink(listener: (connected: boolean) => void): () => void
  close(): Promise<void>
}

export async function openAdminSeedLink(config: NodeConfig, log: Logger): Promise<AdminSeedLink> {
  const eventListeners = new Set<(event: NodeEvent) => void>()
  const linkListeners = new Set<(connected: boolean) => void>()
  const client = createMetaClient({
    seeds: config.seed,
    secret: config.secret,
    peer: { kind: 'admin' },
    maxFrame: Math.max(config.maxFrame, ADMIN_MAX_FRAME),
    log,
    reconnect: true,
    onConnect: async (link) => void (await link.request('subscribe', { events: true })),
    onPush: (op, body) => {
      if (op !== 'event') return
      for (const listener of eventListeners) listener(body as NodeEvent)
    },
  })
  client.on('connected', () => linkListeners.forEach((l) => l(true)))
  client.on('disconnected', () => linkListeners.forEach((l) => l(false)))
  // Never awaited: the node serves (and answers 503 ESPRA_ERR_ADMIN_SEED) while no seed is reachable.
  client.ready.catch(() => {})
  const tasks = config.redis === null
    ? createMetaTaskQueue(client, 'tasks', { retryWindowMs: 0 }) // like the datastore below: 503 at once while no seed is linked
    : (await import('../../lib/tasks/queue-redis.js')).createRedisTaskQueue({ url: config.redis, log })
  const mailQueue = await openOutboundQueue(config.redis, log, client)
  const subscribe = <T>(set: Set<T>, listener: T): (() => void) => {
    set.add(listener)
    return () => void set.delete(listener)
  }
  return {
    client,
    datastore: createDatastoreClient(client, { retryWindowMs: 0 }), // answers 503 at once while no seed is linked (docs/admin-api.md)
    tasks,
    mailQueue,
    onEvent: (listener) => subscribe(eventListeners, listener),
    onLink: (listener) => subscribe(linkListeners, listener),
    async close() {
      eventListeners.clear()
      linkListeners.clear()
      await Promise.allSettled([config.redis === null ? null : tasks.close(), config.redis === null ? null : mailQueue.close()])
      await client.close()
    },
  }
}
