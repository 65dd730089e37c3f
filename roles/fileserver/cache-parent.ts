/**
 * The fileserver parent's side of the disk cache: opens the node's cache (and
 * a blob store to fill it from) and follows `files.changed` pushes; the
 * children's `cache-fill` requests and `cache-hit` reports reach it through
 * node.ts's table.
 */
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { parseFilesChangedPush } from '../../lib/transport/files-changed.js'
import { registerDiskCacheMetrics } from './counters.js'
import { openDiskCache, type DiskCache } from './disk-cache.js'

/** Child → parent: a request to fill the cache with `key`, and the report of a hit on a cached file. */
export type CacheToParent = { t: 'cache-fill'; key: string } | { t: 'cache-hit'; name: string }

export interface CacheParent {
  readonly cache: DiskCache
  readonly handle: Handle
}

/** Opens the node's cache and keeps it current with `files.changed`; node.ts routes the children's messages to it. */
export async function startCacheParent(ctx: ParentContext): Promise<CacheParent> {
  const { config, log } = ctx
  const store = await createBlobStore(blobStoreConfig(config))
  const cache = await openDiskCache({ dir: config.cacheDir, maxBytes: config.cacheMaxBytes, store, log }).catch(async (err: unknown) => {
    await store.close()
    throw err
  })
  ctx.onPush((push) => {
    if (push.op !== 'files.changed') return
    try {
      const change = parseFilesChangedPush(push.body)
      cache.changed(change.keys, change.all === true)
    } catch (err) {
      log.warn({ err }, 'malformed files.changed push ignored')
    }
  })
  registerDiskCacheMetrics(ctx.metrics, cache.stats)
  return {
    cache,
    handle: {
      async close() {
        await cache.close()
        await store.close()
      },
      destroy() {
        void store.close()
      },
    },
  }
}
