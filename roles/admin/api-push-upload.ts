/**
 * One file's bytes of an HTTP push, from the request body to the seed: the
 * CLI's `build.blob` chunks on this child's seed link (docs/meta-protocol.md,
 * "Builds"), so the seed checks and stores them exactly as for the CLI.
 * While the body streams, its length is held to the manifest's size (a byte
 * more and it stops) and its sha256 is computed; the last chunk, the one
 * that makes the seed store the blob, goes only once the whole body has
 * arrived with the right size and hash. Anything else makes the seed drop
 * its half: nothing is stored.
 *
 * The seed keeps half-sent blobs per connection, at most 8, keyed by hash:
 * this child sends at most {@link SLOTS} at once and one upload per hash.
 */
import { createHash } from 'node:crypto'
import { createError } from '../../lib/core/errors.js'
import type { MetaClient } from '../../lib/transport/meta-client.js'
import type { RawBody } from './api-push-body.js'

const REQUEST_TIMEOUT_MS = 30_000
/** Chunks of one file in flight to the seed at once (the CLI's window: 4 took 10.2 s for 60 MB here, 8 took 6.0 s). */
const WINDOW = 8
/** Files one child sends at once (the seed allows 8 half-sent blobs a connection). */
const SLOTS = 6

/** `build.blob` at an offset no upload can be at: the seed drops its half of `hash` (and answers an error). */
const RESET_OFFSET = Number.MAX_SAFE_INTEGER

export interface BlobUploads {
  /** Streams `body` to the seed as blob `hash` of `size` bytes; resolves the bytes stored. */
  upload(hash: string, size: number, chunkSize: number, body: RawBody): Promise<number>
}

export function createBlobUploads(client: MetaClient): BlobUploads {
  const busy = new Set<string>()
  let running = 0
  const waiting: (() => void)[] = []
  const acquire = async (): Promise<void> => {
    while (running >= SLOTS) await new Promise<void>((resolve) => waiting.push(resolve))
    running++
  }
  const release = (): void => {
    running--
    waiting.shift()?.()
  }

  async function send(hash: string, size: number, chunkSize: number, body: RawBody): Promise<number> {
    const digest = createHash('sha256')
    const inflight = new Set<Promise<unknown>>()
    let failure = null as Error | null
    let offset = 0
    let pending: Buffer[] = []
    let pendingBytes = 0
    const sendChunk = (chunk: Buffer, last: boolean): Promise<unknown> => {
      const at = offset
      offset += chunk.length
      const sent = client.request('build.blob', { hash, offset: at, chunk, last }, REQUEST_TIMEOUT_MS)
      inflight.add(sent)
      sent.then(() => inflight.delete(sent), (err: unknown) => {
        inflight.delete(sent)
        failure ??= err as Error
      })
      return sent
    }
    try {
      let received = 0
      for (;;) {
        const chunk = await body.read()
        if (chunk === null) break
        received += chunk.length
        if (received > size) {
          throw createError('ESPRA_ERR_ADMIN_PUSH_SIZE', { reason: `${size} bytes for ${hash}; the body has more`, hash, expected: size, received })
        }
        digest.update(chunk)
        pending.push(chunk)
        pendingBytes += chunk.length
        // Whole chunks go on at once, but never the file's end: that one waits for the body's end and its hash.
        while (pendingBytes > chunkSize || (pendingBytes === chunkSize && received < size)) {
          const all = Buffer.concat(pending)
          pending = [all.subarray(chunkSize)]
          pendingBytes = all.length - chunkSize
          void sendChunk(all.subarray(0, chunkSize), false).catch(() => {})
          if (inflight.size >= WINDOW) await Promise.race(inflight).catch(() => {})
          if (failure !== null) throw failure
        }
      }
      if (received !== size) throw createError('ESPRA_ERR_ADMIN_PUSH_SIZE', { reason: `${size} bytes for ${hash}; the body has ${received}`, hash, expected: size, received })
      const actual = digest.digest('hex')
      if (actual !== hash) throw createError('ESPRA_ERR_BUILD_HASH_MISMATCH', { hash, actual })
      await Promise.all(inflight)
      if (failure !== null) throw failure
      await sendChunk(Buffer.concat(pending), true)
      return size
    } catch (err) {
      body.drop()
      await Promise.allSettled(inflight)
      if (offset > 0) await client.request('build.blob', { hash, offset: RESET_OFFSET, chunk: Buffer.alloc(0), last: false }, REQUEST_TIMEOUT_MS).catch(() => {})
      throw err
    }
  }

  return {
    async upload(hash, size, chunkSize, body) {
      if (busy.has(hash)) throw createError('ESPRA_ERR_ADMIN_PUSH_BUSY', { what: hash, doing: 'uploaded', hash })
      busy.add(hash)
      try {
        await acquire()
        try {
          return await send(hash, size, chunkSize, body)
        } finally {
          release()
        }
      } finally {
        busy.delete(hash)
      }
    },
  }
}
