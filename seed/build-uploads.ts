/**
 * The blob uploads of an app push (docs/meta-protocol.md, "Builds"): which
 * content hashes the blob store lacks (`build.plan`), and each connection's
 * blobs sent in chunks under the frame limit (`build.blob`), checked against
 * their sha256 before they are stored under `blobs/sha256/<hash>`, once each.
 */
import { createHash, type Hash } from 'node:crypto'
import { blobKeyOf, isHash, MAX_FILE_BYTES } from '../lib/builds/manifest.js'
import { createError } from '../lib/core/errors.js'
import type { Logger } from '../lib/core/log.js'
import type { BlobStore } from '../lib/storage/blob-store.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import { body, invalid } from './build-input.js'

/** Blobs one connection may have half-uploaded at once. */
const MAX_OPEN_UPLOADS = 8
const HEAD_PARALLEL = 16

interface Upload {
  offset: number
  chunks: Buffer[]
  hash: Hash
}

interface PeerUploads {
  open: Map<string, Upload>
  /** Blob bytes this connection sent since its last commit (reported by `build.commit`). */
  received: number
}

export interface BuildUploads {
  /** The chunk size a pusher is told to use: a chunk plus its envelope fits one frame. */
  readonly chunkSize: number
  /** The hashes whose blobs the store lacks, in the order given. */
  missingHashes(hashes: readonly string[]): Promise<string[]>
  /** `build.blob`: one chunk of one blob; the last one checks the hash and stores the blob. */
  blob(raw: unknown, peer: MetaPeer): Promise<Record<string, unknown>>
  /** Blob bytes the peer sent since this was last asked (its last commit). */
  takeReceived(peer: MetaPeer): number
  peerClosed(peer: MetaPeer): void
}

export function createBuildUploads(opts: { readonly blobs: BlobStore; readonly log: Logger; readonly maxFrame: number }): BuildUploads {
  const { blobs, log } = opts
  // A chunk plus its envelope must fit one frame.
  const chunkSize = Math.max(256, Math.min(512 * 1024, opts.maxFrame - 1024))
  const uploads = new WeakMap<MetaPeer, PeerUploads>()

  async function missingHashes(hashes: readonly string[]): Promise<string[]> {
    const missing: string[] = []
    for (let i = 0; i < hashes.length; i += HEAD_PARALLEL) {
      const batch = hashes.slice(i, i + HEAD_PARALLEL)
      const found = await Promise.all(batch.map((h) => blobs.head(blobKeyOf(h))))
      batch.forEach((h, j) => found[j] === null && missing.push(h))
    }
    return missing
  }

  function peerUploads(peer: MetaPeer): PeerUploads {
    let state = uploads.get(peer)
    if (state === undefined) uploads.set(peer, (state = { open: new Map(), received: 0 }))
    return state
  }

  async function blob(raw: unknown, peer: MetaPeer): Promise<Record<string, unknown>> {
    const b = body(raw)
    const { hash, offset, last } = b
    const chunk = b['chunk']
    if (!isHash(hash)) throw invalid('hash', 'must be a sha256 in lower-case hex')
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw invalid('offset', 'must be a non-negative integer')
    if (!(chunk instanceof Uint8Array)) throw invalid('chunk', 'must be binary')
    if (typeof last !== 'boolean') throw invalid('last', 'must be a boolean')
    const state = peerUploads(peer)
    let upload = state.open.get(hash)
    if (upload === undefined) {
      if (offset !== 0) throw createError('ESPRA_ERR_BUILD_UPLOAD', { reason: `blob ${hash}: the first chunk must be at offset 0 (got ${offset})`, hash, expected: 0 })
      if (state.open.size >= MAX_OPEN_UPLOADS) throw createError('ESPRA_ERR_BUILD_UPLOAD', { reason: `at most ${MAX_OPEN_UPLOADS} blobs may be half-uploaded at once`, limit: MAX_OPEN_UPLOADS })
      state.open.set(hash, (upload = { offset: 0, chunks: [], hash: createHash('sha256') }))
    }
    if (offset !== upload.offset) {
      state.open.delete(hash)
      throw createError('ESPRA_ERR_BUILD_UPLOAD', { reason: `blob ${hash}: expected offset ${upload.offset}, got ${offset}; start again`, hash, expected: upload.offset })
    }
    if (upload.offset + chunk.length > MAX_FILE_BYTES) {
      state.open.delete(hash)
      throw createError('ESPRA_ERR_BUILD_UPLOAD', { reason: `blob ${hash}: larger than ${MAX_FILE_BYTES} bytes`, hash, limit: MAX_FILE_BYTES })
    }
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    upload.chunks.push(bytes)
    upload.hash.update(bytes)
    upload.offset += bytes.length
    state.received += bytes.length
    if (!last) return { offset: upload.offset }
    state.open.delete(hash)
    const actual = upload.hash.digest('hex')
    if (actual !== hash) throw createError('ESPRA_ERR_BUILD_HASH_MISMATCH', { hash, actual })
    await blobs.put(blobKeyOf(hash), Buffer.concat(upload.chunks))
    log.info({ hash, bytes: upload.offset }, 'build blob stored')
    return { offset: upload.offset, stored: true }
  }

  return {
    chunkSize,
    missingHashes,
    blob,
    takeReceived(peer) {
      const state = peerUploads(peer)
      const received = state.received
      state.received = 0
      return received
    },
    peerClosed: (peer) => uploads.delete(peer),
  }
}
