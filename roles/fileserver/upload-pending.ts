/**
 * The fileserver parent's retry job for pending uploads: files a child
 * received while the blob store (or the seed) was out of reach wait in
 * `<data-dir>/uploads-pending/`; this job stores and records them, with
 * backoff (1 s doubling to 1 min) while the store stays out of reach, until
 * none is left. A child that leaves one behind wakes the job at once. One job
 * per node (in the parent), so children never race for the same file.
 *
 * The same parent keeps `<data-dir>/uploads-tmp/` clean: what an earlier run
 * left there (a node killed mid-upload) is removed at start, before any child
 * runs, and what a child left is removed when it exits (its files carry its
 * pid, upload-store.ts `tmpUploadPath`).
 */
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { createError } from '../../lib/core/errors.js'
import type { Handle, ParentContext } from '../../lib/process/role.js'
import { blobStoreConfig, createBlobStore } from '../../lib/storage/blob-store.js'
import { createUploadCommitter } from './upload-commit.js'
import { dropPending, isTransient, listPending, storeFile, sweepUploadTmp, uploadDirs, type UploadFile } from './upload-store.js'

const MIN_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 60_000

/** Child → parent request: a seed op for an upload, sent over the node's seed link (children keep no link of their own). */
export interface UploadSeedRequest {
  t: 'upload-seed'
  op: string
  body: unknown
  timeoutMs: number
}

/** The seed ops a child may have relayed: an upload's commit (token, record, notification), token checks, tus upload state. */
const RELAYED_OPS = new Set(['ds.get', 'ds.put', 'ds.consume', 'ds.putIf', 'files.changed', 'upload.commit'])

export interface PendingUploads extends Handle {
  /** Sends a child's `upload-seed` request to the seed over the node's link. */
  seed(request: UploadSeedRequest): Promise<unknown>
  /** Pending files right now (for heartbeats and `admin status`). */
  count(): number
  /** Run now (a child left a file pending: its `upload-pending`). */
  wake(): void
}

export async function startPendingUploads(ctx: ParentContext): Promise<PendingUploads> {
  const { config, log } = ctx
  const swept = await sweepUploadTmp(config, null)
  if (swept > 0) log.warn({ files: swept }, 'removed temporary upload files an earlier run left behind')
  ctx.children.onExit((pid) => {
    sweepUploadTmp(config, pid).then(
      (n) => n > 0 && log.info({ child: pid, files: n }, 'removed temporary upload files of an exited child'),
      (err: unknown) => log.warn({ err, child: pid }, 'could not remove temporary upload files of an exited child'),
    )
  })
  const blobs = await createBlobStore(blobStoreConfig(config))
  // The node's own seed link: rejects with ESPRA_ERR_META_CLOSED while no seed is reachable (a transient failure here).
  const seed = { request: <R>(op: string, body: unknown, timeoutMs?: number) => ctx.seedRequest<R>(op, body, timeoutMs) }
  const committer = createUploadCommitter(seed)
  const dir = uploadDirs(config).pending
  let pending = 0
  const setPending = (n: number): void => {
    pending = n
    ctx.setPendingUploads(n)
  }
  setPending((await listPending(config)).length)
  let backoff = MIN_BACKOFF_MS
  let timer: NodeJS.Timeout | null = null
  let running = false
  let again = false
  let closed = false

  async function pass(): Promise<boolean> {
    const ids = await listPending(config)
    setPending(ids.length)
    for (const sha256 of ids) {
      if (closed) return false
      let record: UploadFile
      try {
        record = JSON.parse(await readFile(join(dir, `${sha256}.json`), 'utf8')) as UploadFile
      } catch (err) {
        log.error({ err, sha256 }, 'pending upload record unreadable; left in place')
        continue
      }
      try {
        // Stored, then recorded and announced in one upload.commit (no token: it was spent when the file was kept).
        await storeFile(blobs, committer, join(dir, `${sha256}.bin`), record)
        await dropPending(config, sha256)
        setPending(pending - 1)
        log.info({ sha256, key: record.key, size: record.size }, 'pending upload stored')
      } catch (err) {
        if (isTransient(err)) {
          log.warn({ err, pending }, 'pending uploads: the store is still out of reach')
          return false
        }
        log.error({ err, sha256 }, 'pending upload cannot be stored; left in place')
      }
    }
    return true
  }

  function schedule(ms: number): void {
    if (closed) return
    if (timer) clearTimeout(timer)
    timer = setTimeout(run, ms)
    timer.unref()
  }

  function run(): void {
    timer = null
    if (running) return void (again = true)
    running = true
    pass().then(
      (done) => {
        running = false
        if (again) {
          again = false
          backoff = MIN_BACKOFF_MS
          return schedule(0)
        }
        if (done && pending === 0) return void (backoff = MIN_BACKOFF_MS)
        schedule(backoff)
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
      },
      (err: unknown) => {
        running = false
        log.error({ err }, 'pending uploads pass failed')
        schedule(backoff)
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
      },
    )
  }

  function wake(): void {
    backoff = MIN_BACKOFF_MS
    schedule(0)
  }
  if (pending > 0) {
    log.warn({ pending }, 'uploads pending from an earlier run: storing them')
    schedule(0)
  }
  return {
    count: () => pending,
    wake,
    seed({ op, body: inner, timeoutMs }) {
      if (typeof op !== 'string' || !RELAYED_OPS.has(op)) return Promise.reject(createError('ESPRA_ERR_META_BAD_REQUEST', { field: 'op', reason: `is not relayed: fileserver nodes relay only ${[...RELAYED_OPS].join(', ')} (got ${JSON.stringify(String(op).slice(0, 40))})` }))
      return ctx.seedRequest(op, inner, typeof timeoutMs === 'number' ? timeoutMs : undefined)
    },
    async close() {
      closed = true
      if (timer) clearTimeout(timer)
      committer.close()
      await blobs.close()
    },
    destroy() {
      closed = true
      if (timer) clearTimeout(timer)
      committer.close()
      void blobs.close()
    },
  }
}
