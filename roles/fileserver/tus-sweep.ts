/**
 * The fileserver parent's sweep of tus uploads (tus.ts): every half
 * `--upload-expiry` (at least every second, at most every 10 minutes) it
 * deletes the state and the parts of every upload past its `Upload-Expires`,
 * and parts no upload refers to that are older than 10 minutes (left by a
 * node that stopped between storing a part and recording it, or between
 * deleting an upload's state and its parts).
 *
 * Every fileserver node runs it; they cannot collide: an expired state is
 * taken with the datastore's atomic `consume`, so one node deletes each, and
 * deleting a part twice is harmless.
 */
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { listAll } from '../../lib/storage/datastore.js'
import { asTusState, partKey, partsPrefix } from './tus-protocol.js'

/** An unreferenced part younger than this may belong to a PATCH still recording it. */
export const ORPHAN_AGE_MS = 10 * 60_000

export const sweepInterval = (expiryMs: number): number => Math.min(Math.max(Math.floor(expiryMs / 2), 1000), 10 * 60_000)

export async function startTusSweep(ctx: ParentContext): Promise<Handle> {
  const { config, log } = ctx
  const blobs = await createBlobStore(blobStoreConfig(config))
  const datastore = createDatastoreClient({ request: <R>(op: string, body: unknown, timeoutMs?: number) => ctx.seedRequest<R>(op, body, timeoutMs) })
  let running = false
  let closed = false

  async function sweep(now = Date.now()): Promise<void> {
    let expired = 0
    let orphans = 0
    const referenced = new Set<string>()
    for await (const { key: id, value } of listAll(datastore, 'tusUploads')) {
      if (closed) return
      const state = asTusState(value)
      if (state === null) continue
      if (state.expires > now) {
        state.parts.forEach(([nonce], index) => referenced.add(partKey(id, index, nonce)))
        continue
      }
      if (asTusState(await datastore.consume('tusUploads', id)) === null) continue
      expired++
      for await (const part of blobs.list(partsPrefix(id))) await blobs.delete(part.key)
    }
    for await (const part of blobs.list('tus/')) {
      if (closed) return
      if (referenced.has(part.key) || part.lastModified.getTime() > now - ORPHAN_AGE_MS) continue
      await blobs.delete(part.key)
      orphans++
    }
    if (expired > 0 || orphans > 0) log.info({ expired, orphans }, 'tus sweep: expired uploads and orphaned parts deleted')
  }

  const timer = setInterval(() => {
    if (running || closed) return
    running = true
    sweep().catch((err: unknown) => log.warn({ err }, 'tus sweep failed; next time')).finally(() => void (running = false))
  }, sweepInterval(config.uploadExpiry))
  timer.unref()

  return {
    async close() {
      closed = true
      clearInterval(timer)
      await blobs.close()
    },
    destroy() {
      closed = true
      clearInterval(timer)
      void blobs.close()
    },
  }
}
