/**
 * The blob store: one small interface, two backends chosen at construction
 * (a local directory, the default under `up`; S3 or any S3-compatible
 * service). Keys and options are checked once, in `blob-key.ts`, with the
 * same rules for both backends, so a key that works locally works on S3.
 *
 * Failures carry codes: `ESPRA_ERR_STORAGE_KEY` / `_INVALID` (bad input),
 * `_RANGE` (416), `_UNAVAILABLE` (backend unreachable: retry later),
 * `_FAILED` (backend refused). A missing key is `null`, not an error.
 */
import type { Readable, Writable } from 'node:stream'
import type { NodeConfig } from '../core/config.js'
import type { ByteRange, PutOptions } from './blob-key.js'
import type { S3BlobStoreOptions } from './s3-blob-store.js'

export type { ByteRange, PutOptions } from './blob-key.js'

export interface PutResult {
  readonly key: string
  /** Bytes stored. */
  readonly size: number
  /** Opaque version tag without quotes (MD5 hex for single-part objects). */
  readonly etag: string
}

export interface BlobInfo {
  readonly key: string
  /** Size of the whole object, also when a range was read. */
  readonly size: number
  readonly contentType: string
  readonly contentEncoding: string | null
  readonly metadata: Readonly<Record<string, string>>
  readonly etag: string
  readonly lastModified: Date
}

export interface BlobObject extends BlobInfo {
  /** The bytes; consume or destroy it. */
  readonly body: Readable
  /** Inclusive offsets of the bytes in `body` when a range was asked for, else null. */
  readonly range: { readonly start: number; readonly end: number } | null
}

export interface BlobListEntry {
  readonly key: string
  readonly size: number
  readonly etag: string
  readonly lastModified: Date
}

/** Options of {@link BlobStore.putFile}. */
export interface PutFileOptions extends PutOptions {
  /**
   * The version tag to record, when the caller computed one over the same
   * bytes already (a content hash taken while receiving them): the local
   * backend then reads nothing (else it computes the MD5 hex); S3 always
   * records its own.
   */
  readonly etag?: string
}

/** A put written by {@link BlobStore.stage}, waiting for its {@link BlobStore.commit}. */
export interface StagedPut extends PutResult {}

export interface BlobStore {
  readonly kind: 'local' | 's3'
  /** Stores `body` under `key` (replacing any object there) once every byte is durable. */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult>
  /**
   * Stores the finished local file at `path` under `key`, as {@link put}
   * does, without streaming it through this process when the backend can
   * avoid it: the local backend hard-links it into the store (copies it with
   * copy_file_range across file systems); S3 uploads it. `path` is left in
   * place: the caller removes it.
   */
  putFile(key: string, path: string, options?: PutFileOptions): Promise<PutResult>
  /**
   * Group commit, first half: writes `body` for `key` without waiting for
   * the disk. Hand every staged put to {@link commit} or {@link discard}.
   * Local: nothing is visible or durable before `commit`. S3: the object is
   * stored (durable and visible) when this resolves, as a PUT is.
   */
  stage(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StagedPut>
  /**
   * Makes staged puts durable and visible, all together: the local backend
   * syncs every file of the group at once and each directory once (one round
   * of fsyncs for the group instead of three fsyncs one after another per
   * object); S3 has nothing left to do. Rejects when any of them failed; then
   * `discard` them all.
   */
  commit(staged: readonly StagedPut[]): Promise<void>
  /** Removes staged puts, committed or not (local: an object put under the key again since is left alone; S3: the key is deleted). */
  discard(staged: readonly StagedPut[]): Promise<void>
  /**
   * Backends that gain from it (S3): an object written as its bytes arrive,
   * under a temporary key (`tmpKey`), for a caller that learns the final
   * key only at the end (content addressing). Write the bytes, `end()`,
   * await `done`, then {@link moveStreamed}; on failure `abort()` (nothing
   * is left). Absent on the local backend: its callers write a file and
   * hand it to {@link putFile}, which links it.
   */
  openStream?(tmpKey: string): BlobStream
  /** Moves a finished {@link openStream} object to `key` with its final options, on the server (no bytes pass through here), and removes `tmpKey`. */
  moveStreamed?(tmpKey: string, key: string, size: number, options?: PutOptions): Promise<void>
  /** The object, or null when there is none. */
  get(key: string, options?: { range?: ByteRange }): Promise<BlobObject | null>
  head(key: string): Promise<BlobInfo | null>
  /** Removes the object; no error when there is none. */
  delete(key: string): Promise<void>
  /**
   * Every object whose key starts with `prefix`, fetched lazily. The local
   * backend and AWS S3 yield them in key order; some S3-compatible servers
   * use their own order.
   */
  list(prefix?: string): AsyncIterable<BlobListEntry>
  close(): Promise<void>
}

/** See {@link BlobStore.openStream}. */
export interface BlobStream extends Writable {
  readonly key: string
  /** Settles once the object is whole under its temporary key; `parts`: multipart parts sent (0: one PUT). */
  readonly done: Promise<{ readonly size: number; readonly parts: number }>
  abort(): Promise<void>
}

export type BlobStoreConfig =
  | { readonly kind: 'local'; readonly dir: string }
  | ({ readonly kind: 's3' } & S3BlobStoreOptions)

/** Picks and builds the backend; only the chosen one is loaded (the AWS SDK alone costs a process about 20 MB and 200 ms). */
export async function createBlobStore(config: BlobStoreConfig): Promise<BlobStore> {
  if (config.kind === 'local') return (await import('./local-blob-store.js')).createLocalBlobStore(config.dir)
  return (await import('./s3-blob-store.js')).createS3BlobStore(config)
}

/** The blob-store part of a node's config (`--blob-store`, `--blob-dir`, `--s3-*`). */
export function blobStoreConfig(config: NodeConfig): BlobStoreConfig {
  if (config.blobStore === 'local') return { kind: 'local', dir: config.blobDir }
  return {
    kind: 's3', bucket: config.s3Bucket!, region: config.s3Region,
    ...(config.s3Endpoint !== null ? { endpoint: config.s3Endpoint } : {}),
  }
}
