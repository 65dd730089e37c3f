/**
 * Where a received upload goes: the blob store (`files/<sha256>`, gzip for
 * compressible types) and then its record in the datastore (`files` kind,
 * key: the sha256), in that order, so a record always names stored bytes.
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
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import { notifyFileChanged, type FileChangeLink } from '../../lib/transport/files-changed.js'
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

/** Tells every fileserver (through the seed's `files.changed`) that `key` now exists, so negative caches forget it. */
export function announceStored(seed: FileChangeLink, key: string, onError: (err: unknown) => void): void {
  notifyFileChanged(seed, key).catch(onError)
}

/** Failures that mean "try again later": the blob store or the seed is out of reach. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'ESPRA_ERR_STORAGE_UNAVAILABLE' || code === 'ESPRA_ERR_META_CLOSED' || code === 'ESPRA_ERR_META_TIMEOUT' ||
    code === 'ESPRA_ERR_SEED_UNREACHABLE' || code === 'ESPRA_ERR_IPC_TIMEOUT'
}

/** The record, when the same bytes were stored before. */
export async function existingFile(datastore: Datastore, sha256: string): Promise<FileRecord | null> {
  return (await datastore.get('files', sha256)) as FileRecord | null
}

/**
 * Stores the bytes at `path` and records them; returns the record (the
 * earlier one, not fresh, when the bytes were there already). `gzipped`: a
 * gzip of them made while they arrived (compressible types), stored as it is
 * instead of compressing `path` now.
 */
export async function storeFile(blobs: BlobStore, datastore: Datastore, path: string, record: Omit<FileRecord, 'encoding' | 'storedAt'>, gzipped: string | null = null): Promise<{ record: FileRecord; fresh: boolean }> {
  const known = await existingFile(datastore, record.sha256)
  if (known) return { record: known, fresh: false }
  const gzip = isCompressible(record.type)
  const options = {
    contentType: record.type,
    ...(gzip ? { contentEncoding: 'gzip' } : {}),
    // inline and filename: what the answer under /f/ needs besides the type (the first upload of some bytes decides them).
    metadata: { sha256: record.sha256, whirlpool: record.whirlpool, size: String(record.size), ...uploadMetadata(record.inline === true, record.filename) },
  }
  // Stored as received: the store takes the file itself (a local store links it, no second write), its sha256 as the version tag.
  if (gzip && gzipped !== null) await blobs.putFile(record.key, gzipped, options)
  else if (gzip) await blobs.put(record.key, createReadStream(path).pipe(createGzip({ level: UPLOAD_GZIP_LEVEL })), options)
  else await blobs.putFile(record.key, path, { ...options, etag: record.sha256 })
  const full: FileRecord = { ...record, encoding: gzip ? 'gzip' : null, storedAt: Date.now() }
  await datastore.put('files', record.sha256, { ...full })
  return { record: full, fresh: true }
}

/** Moves a received file into the pending directory with its record; the parent's job stores it later. */
export async function keepPending(config: NodeConfig, path: string, record: Omit<FileRecord, 'encoding' | 'storedAt'>): Promise<void> {
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
