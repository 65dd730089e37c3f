/**
 * Where a received upload goes: the blob store (`files/<sha256>`, gzip for
 * compressible types) and then its record in the datastore (`files` kind,
 * key: the sha256, written by the seed's `upload.commit`, upload-commit.ts),
 * in that order, so a record always names stored bytes.
 * Content addressed: the same bytes are stored once. Used by the child that
 * received the upload and by the parent's retry job for pending ones
 * (upload-pending.ts), which keeps files whose store was unreachable in
 * `<data-dir>/uploads-pending/` as `<sha256>.bin` plus `<sha256>.json`.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createGzip } from 'node:zlib'
import { isCompressible } from '../../lib/builds/manifest.js'
import type { NodeConfig } from '../../lib/core/config.js'
import type { BlobStore, PutOptions } from '../../lib/storage/blob-store.js'
import type { StreamedBlob } from './upload-stream.js'
import { createError } from '../../lib/core/errors.js'
import type { UploadCommitter } from './upload-commit.js'
import { UPLOAD_GZIP_LEVEL } from './upload-gzip.js'
import { uploadMetadata } from './upload-headers.js'

/** The `files` record of an upload (also what the client is answered, plus `url`). */
export interface FileRecord {
  readonly key: string
  readonly size: number
  readonly sha256: string
  readonly whirlpool: string
  readonly type: string
  readonly encoding: 'gzip' | null
  readonly filename: string | null
  readonly owner: string | null
  /** Its token allowed an active type to be shown inline (upload-headers.ts); absent in records of earlier versions: false. */
  readonly inline?: boolean
  readonly storedAt: number
}

/** What is known of an upload before it is stored. */
export type UploadFile = Omit<FileRecord, 'encoding' | 'storedAt'>

export const blobKeyOfUpload = (sha256: string): string => `files/${sha256}`
/** Where the fileserver will serve it (the `/f/` route of the S3-files work). */
export const urlOfUpload = (sha256: string): string => `/f/${blobKeyOfUpload(sha256)}`

export const uploadDirs = (config: NodeConfig) => ({
  tmp: join(config.dataDir, 'uploads-tmp'),
  pending: join(config.dataDir, 'uploads-pending'),
})

/**
 * A new temporary file name in `<data-dir>/uploads-tmp/` for this process:
 * `<pid>-<label>-<random>`, so the parent can remove what a child left
 * behind when it dies (even by `kill -9`), and everything at start.
 */
export function tmpUploadPath(config: NodeConfig, label: string): string {
  return join(uploadDirs(config).tmp, `${process.pid}-${label}-${randomBytes(8).toString('hex')}`)
}

/**
 * Removes leftovers of dead processes from `<data-dir>/uploads-tmp/`: every
 * file when `pid` is null (at start, before any child runs), else the files
 * of child `pid` (once it exited). Returns how many went.
 */
export async function sweepUploadTmp(config: NodeConfig, pid: number | null): Promise<number> {
  const dir = uploadDirs(config).tmp
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  const mine = pid === null ? names : names.filter((n) => n.startsWith(`${pid}-`))
  await Promise.all(mine.map((n) => rm(join(dir, n), { force: true, recursive: true })))
  return mine.length
}

/** Failures that mean "try again later": the blob store or the seed is out of reach. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'ESPRA_ERR_STORAGE_UNAVAILABLE' || code === 'ESPRA_ERR_META_CLOSED' || code === 'ESPRA_ERR_META_TIMEOUT' ||
    code === 'ESPRA_ERR_SEED_UNREACHABLE' || code === 'ESPRA_ERR_IPC_TIMEOUT'
}

/** The blob-store options of an upload's object: type, gzip when compressible, hashes, size and what its answer under /f/ needs. */
export function blobOptions(record: UploadFile): PutOptions {
  return {
    contentType: record.type,
    ...(isCompressible(record.type) ? { contentEncoding: 'gzip' } : {}),
    // inline and filename: what the answer under /f/ needs besides the type (the first upload of some bytes decides them).
    metadata: { sha256: record.sha256, whirlpool: record.whirlpool, size: String(record.size), ...uploadMetadata(record.inline === true, record.filename) },
  }
}

/**
 * Stores the bytes at `path` under the record's key unless an object is
 * there already (content addressed: the same bytes; the first upload of
 * them keeps its metadata). `gzipped`: a gzip of them made while they
 * arrived (compressible types), stored as it is instead of compressing
 * `path` now. `streamed`: the object sent to the store while the body
 * arrived (S3, upload-stream.ts), moved to its key; the local file only
 * when that stream was dropped.
 */
export async function storeBlob(blobs: BlobStore, path: string, record: UploadFile, gzipped: string | null = null, streamed: StreamedBlob | null = null): Promise<void> {
  const options = blobOptions(record)
  if (streamed !== null && (await streamed.finish(record.key, options))) return
  if ((await blobs.head(record.key)) !== null) return
  const gzip = isCompressible(record.type)
  // Stored as received: the store takes the file itself (a local store links it, no second write), its sha256 as the version tag.
  if (gzip && gzipped !== null) await blobs.putFile(record.key, gzipped, options)
  else if (gzip) await blobs.put(record.key, createReadStream(path).pipe(createGzip({ level: UPLOAD_GZIP_LEVEL })), options)
  else await blobs.putFile(record.key, path, { ...options, etag: record.sha256 })
}

/** The record of stored bytes. */
export const fileRecord = (file: UploadFile): FileRecord => ({ ...file, encoding: isCompressible(file.type) ? 'gzip' : null, storedAt: Date.now() })

/**
 * Stores and records an upload whose token is spent already (tus, the retry
 * job): the bytes first, then the record in one `upload.commit`, so a record
 * always names stored bytes. Returns the record (the earlier one, not
 * fresh, when the same bytes were recorded before).
 */
export async function storeFile(blobs: BlobStore, committer: UploadCommitter, path: string, file: UploadFile, gzipped: string | null = null, streamed: StreamedBlob | null = null): Promise<{ record: FileRecord; fresh: boolean }> {
  await storeBlob(blobs, path, file, gzipped, streamed)
  const full = fileRecord(file)
  const answer = await committer.commit(null, full)
  if (answer.used) throw createError('ESPRA_ERR_INTERNAL', { reason: 'upload.commit answered "token used" to a commit without a token' })
  return { record: answer.record ?? full, fresh: answer.fresh }
}

/** Moves a received file into the pending directory with its record; the parent's job stores it later. */
export async function keepPending(config: NodeConfig, path: string, record: UploadFile): Promise<void> {
  const dir = uploadDirs(config).pending
  await mkdir(dir, { recursive: true })
  await rename(path, join(dir, `${record.sha256}.bin`))
  // The record lands last (write, then rename): a `.json` always has its `.bin`.
  const tmp = join(dir, `${record.sha256}.json.${process.pid}`)
  await writeFile(tmp, JSON.stringify(record))
  await rename(tmp, join(dir, `${record.sha256}.json`))
}

/** Ids (sha256) of pending uploads. */
export async function listPending(config: NodeConfig): Promise<string[]> {
  try {
    return (await readdir(uploadDirs(config).pending)).filter((n) => /^[0-9a-f]{64}\.json$/.test(n)).map((n) => n.slice(0, 64))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

export async function dropPending(config: NodeConfig, sha256: string): Promise<void> {
  const dir = uploadDirs(config).pending
  await unlink(join(dir, `${sha256}.json`)).catch(() => {})
  await unlink(join(dir, `${sha256}.bin`)).catch(() => {})
}
