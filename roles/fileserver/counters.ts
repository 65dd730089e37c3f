/**
 * A fileserver's counters: the child's cache lookups and uploads (bumped where
 * they happen) and the parent's disk cache figures, turned into the
 * `espra_fileserver_…` series only when `/metrics` is scraped (see
 * docs/metrics.md).
 */
import type { Registry } from 'prom-client'
import { counterFrom, gaugeFrom } from '../../lib/process/metric-sources.js'

/** How an upload ended: stored, already stored (same content), kept pending for the store, or failed. */
export type UploadOutcome = 'stored' | 'deduplicated' | 'pending' | 'failed'

export class FileCounters {
  /** Blob-store objects served from this child's memory layer, and from the disk cache. */
  memoryHits = 0
  diskHits = 0
  /** Lookups the disk cache did not hold: the child asked the parent to fetch. */
  misses = 0
  /** Lookups answered 404 from the negative cache (known missing), without asking the store. */
  negativeHits = 0
  /** Objects streamed straight from the store (larger than the cache, or no room on its disk). */
  direct = 0
  readonly uploads: Record<UploadOutcome, number> = { stored: 0, deduplicated: 0, pending: 0, failed: 0 }

  register(registry: Registry, hot: () => { objects: number; bytes: number }): void {
    counterFrom(registry, 'espra_fileserver_cache_hits_total', 'blob-store objects served from a cache, by layer (memory in this child, or the node\'s disk cache)', () => [
      { labels: { layer: 'memory' }, value: this.memoryHits },
      { labels: { layer: 'disk' }, value: this.diskHits },
    ])
    counterFrom(registry, 'espra_fileserver_cache_misses_total', 'lookups the disk cache did not hold (a fetch through the parent followed)', () => this.misses)
    counterFrom(registry, 'espra_fileserver_cache_negative_hits_total', 'lookups answered 404 from the negative cache, without asking the store', () => this.negativeHits)
    counterFrom(registry, 'espra_fileserver_direct_total', 'objects streamed straight from the store: larger than the cache, or no room on its disk', () => this.direct)
    gaugeFrom(registry, 'espra_fileserver_memory_cache_objects', 'objects in this child\'s memory layer', () => hot().objects)
    gaugeFrom(registry, 'espra_fileserver_memory_cache_bytes', 'bytes in this child\'s memory layer', () => hot().bytes)
    counterFrom(registry, 'espra_fileserver_uploads_total', 'uploads (POST /upload and tus) that reached the store step, by outcome', () =>
      (Object.keys(this.uploads) as UploadOutcome[]).map((outcome) => ({ labels: { outcome }, value: this.uploads[outcome] })),
    )
  }
}

/** The parent's disk cache series. */
export function registerDiskCacheMetrics(registry: Registry, stats: () => { objects: number; bytes: number; fetches: number; negative: number; noSpace: number }): void {
  gaugeFrom(registry, 'espra_fileserver_disk_cache_objects', 'objects in the node\'s disk cache', () => stats().objects)
  gaugeFrom(registry, 'espra_fileserver_disk_cache_bytes', 'bytes in the node\'s disk cache (bounded by --cache-max-bytes)', () => stats().bytes)
  counterFrom(registry, 'espra_fileserver_disk_cache_fetches_total', 'objects fetched from the blob store to fill the disk cache (one per key however many children missed)', () => stats().fetches)
  counterFrom(registry, 'espra_fileserver_disk_cache_no_space_total', 'fills refused because the cache\'s disk had no room', () => stats().noSpace)
}
