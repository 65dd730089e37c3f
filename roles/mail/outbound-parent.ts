/**
 * The mail parent's outbound side: the blob store, the datastore and the
 * outbound queue over the node's seed link, and the delivery worker
 * (outbound-worker.ts). Closed in reverse order of opening.
 */
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { openOutboundQueue } from '../../lib/mail/outbound-queue.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { createEventSink } from '../../lib/mail/outbound-events.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { asDrainOrder } from '../../lib/transport/drain-order.js'
import { OutboundCounters } from './counters.js'
import { startOutboundWorker } from './outbound-worker.js'

export async function startOutboundParent(ctx: ParentContext): Promise<Handle> {
  const seed = { request: <R>(op: string, body: unknown, timeoutMs?: number) => ctx.seedRequest<R>(op, body, timeoutMs) }
  const blobs = await createBlobStore(blobStoreConfig(ctx.config))
  const datastore = createDatastoreClient(seed)
  const queue = await openOutboundQueue(ctx.config.redis, ctx.log, seed)
  // Events for the app's handleMailEvent go on the app's task queue (the one app nodes consume).
  let appTasks: TaskQueue | null = null
  if (ctx.config.mailEvents) {
    appTasks = ctx.config.redis !== null
      ? (await import('../../lib/tasks/queue-redis.js')).createRedisTaskQueue({ url: ctx.config.redis, log: ctx.log })
      : createMetaTaskQueue(seed)
  }
  const counters = new OutboundCounters()
  counters.register(ctx.metrics)
  const worker = startOutboundWorker({ config: ctx.config, log: ctx.log, datastore, queue, blobs, events: createEventSink(appTasks, ctx.log), counters })
  // A drained node (admin drain) takes no new deliveries; other mail nodes take them.
  ctx.onPush((push) => {
    if (push.op === 'drain') worker.setPaused(asDrainOrder((push.body as { order?: unknown } | null)?.order) !== null)
  })
  return {
    async close() {
      await worker.close()
      await appTasks?.close()
      await queue.close()
      await blobs.close()
    },
    destroy() {
      worker.destroy()
      void appTasks?.close()
      void queue.close()
      void blobs.close()
    },
  }
}
