/**
 * The outbound mail queue: the same durable queue as the app's tasks, kept
 * apart so app consumers never lease a delivery. With `--redis` it is Redis
 * under its own key prefix (loaded only then); otherwise the seed's second
 * embedded queue, reached with the `mailq.*` meta ops.
 */
import type { Logger } from '../core/log.js'
import type { TaskQueue } from '../tasks/queue.js'
import { createMetaTaskQueue, type MetaRequester } from '../tasks/queue-meta.js'

/** Redis keys of the outbound queue. */
export const REDIS_MAIL_PREFIX = 'espra:mailq:'

export async function openOutboundQueue(redis: string | null, log: Logger, seed: MetaRequester): Promise<TaskQueue> {
  if (redis === null) return createMetaTaskQueue(seed, 'mailq')
  const { createRedisTaskQueue } = await import('../tasks/queue-redis.js')
  return createRedisTaskQueue({ url: redis, log, prefix: REDIS_MAIL_PREFIX })
}
