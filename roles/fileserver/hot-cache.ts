/**
 * A child's in-memory layer over the disk cache (see `HotCache`).
 */
import type { CachedFile, CachedMeta } from './cache-file.js'

/** A cached object's whole body in a child's memory. */
export interface HotObject {
  readonly meta: CachedMeta
  readonly body: Buffer
}

export interface HotCacheOptions {
  /** Bytes of bodies kept at most (least recently served dropped first). */
  readonly maxBytes: number
  /** Larger objects are never kept (they stream from the disk cache file). */
  readonly maxObjectBytes: number
}

/**
 * A child's in-memory layer over the disk cache: the whole bodies of small,
 * recently served objects, so a hit costs no open, read, stat or close and
 * no per-request buffer (the disk path copies every body out of the page
 * cache into a fresh buffer, and the garbage collector then frees it: the
 * main costs measured by bench/files.ts). Kept consistent the same way as the
 * disk cache: `forget` on every `files.changed` for the key (or all), and a
 * load that ran while such a change came in is not kept.
 */
export interface HotCache {
  get(key: string): HotObject | undefined
  /** Reads the body of an open cached file into memory when it fits; the caller still closes `file.fh`. */
  load(file: CachedFile): Promise<HotObject | null>
  forget(keys: readonly string[], all: boolean): void
  stats(): { objects: number; bytes: number }
}

export function createHotCache({ maxBytes, maxObjectBytes }: HotCacheOptions): HotCache {
  const entries = new Map<string, HotObject>()
  let bytes = 0
  let generation = 0

  function drop(key: string): void {
    const e = entries.get(key)
    if (e === undefined) return
    entries.delete(key)
    bytes -= e.body.length
  }

  return {
    get(key) {
      const e = entries.get(key)
      if (e === undefined) return undefined
      // Most recently served last: eviction takes from the front.
      entries.delete(key)
      entries.set(key, e)
      return e
    },
    async load({ fh, meta, offset }) {
      if (meta.size > maxObjectBytes || meta.size > maxBytes) return null
      const seen = generation
      const body = Buffer.allocUnsafeSlow(meta.size)
      const { bytesRead } = await fh.read(body, 0, meta.size, offset)
      if (bytesRead !== meta.size) return null
      const hot = { meta, body }
      if (seen !== generation) return hot
      drop(meta.key)
      for (const key of entries.keys()) {
        if (bytes + meta.size <= maxBytes) break
        drop(key)
      }
      entries.set(meta.key, hot)
      bytes += meta.size
      return hot
    },
    forget(keys, all) {
      generation++
      if (all) {
        entries.clear()
        bytes = 0
      }
      for (const key of keys) drop(key)
    },
    stats: () => ({ objects: entries.size, bytes }),
  }
}
