/**
 * The application cache (`ctx.cache`): a per-worker-thread map with
 * per-entry TTL and a bound on entries (the oldest written goes first).
 * Values are kept as given, never copied.
 */
const DEFAULT_MAX_ENTRIES = 10_000

export interface AppCache {
  get(key: string): unknown
  /** `ttlMs` omitted or 0: kept until evicted or deleted. */
  set(key: string, value: unknown, ttlMs?: number): void
  delete(key: string): boolean
  readonly size: number
}

export function createAppCache(maxEntries = DEFAULT_MAX_ENTRIES): AppCache {
  const entries = new Map<string, { value: unknown; expires: number }>()
  return {
    get(key) {
      const e = entries.get(key)
      if (e === undefined) return undefined
      if (e.expires !== 0 && e.expires <= Date.now()) {
        entries.delete(key)
        return undefined
      }
      return e.value
    },
    set(key, value, ttlMs = 0) {
      if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError('ttlMs must be a finite number >= 0')
      entries.delete(key)
      entries.set(key, { value, expires: ttlMs > 0 ? Date.now() + ttlMs : 0 })
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!)
    },
    delete: (key) => entries.delete(key),
    get size() {
      return entries.size
    },
  }
}
