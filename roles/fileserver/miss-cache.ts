/**
 * Fills of the disk cache, one at a time per key, and the negative cache:
 * keys the blob store did not have, remembered (bounded, oldest forgotten
 * first) until a `files.changed` push names them. The parent (disk-cache.ts)
 * and each child (cache-client.ts) keep one each, so that neither asks again
 * for a key known to be missing.
 *
 * A fill that was running when a `files.changed` named its key may have read
 * the store before the change: it runs once more, and a "missing" that may
 * still predate a change is not remembered.
 */

/**
 * What a fill found: the object is in the cache now, the store has no such
 * key, it is larger than the whole cache, or the cache's disk has no room for
 * it (ENOSPC, EDQUOT). The last two are served straight from the store.
 */
export type FillResult = 'cached' | 'missing' | 'too-big' | 'no-space'

/** Keys remembered as missing; past this the oldest are forgotten (they are only asked for again). */
const MISSING_MAX = 100_000

export interface MissCache {
  /** Whether `key` is known to be missing. */
  has(key: string): boolean
  /**
   * Runs `fetch` unless a fill for `key` is running (then shares it). When a
   * change named the key while it ran, its result goes to `discard` and it
   * runs once more.
   */
  fill(key: string, fetch: () => Promise<FillResult>, discard?: (stale: FillResult) => void): Promise<FillResult>
  /** Keys that now exist or changed are no longer missing; `all`: nothing is. */
  changed(keys: readonly string[], all: boolean): void
  readonly size: number
  /** Resolves once every running fill has ended. */
  settled(): Promise<void>
}

export function createMissCache(max = MISSING_MAX): MissCache {
  const missing = new Map<string, true>()
  const running = new Map<string, Promise<FillResult>>()
  /** Keys named by a change while their fill ran. */
  const stale = new Set<string>()

  async function run(key: string, fetch: () => Promise<FillResult>, discard?: (stale: FillResult) => void): Promise<FillResult> {
    for (let attempt = 0; ; attempt++) {
      stale.delete(key)
      const result = await fetch()
      if (stale.has(key) && attempt === 0) {
        discard?.(result)
        continue
      }
      if (result === 'missing' && !stale.has(key)) {
        missing.set(key, true)
        if (missing.size > max) missing.delete(missing.keys().next().value!)
      }
      return result
    }
  }

  return {
    has: (key) => missing.has(key),
    fill(key, fetch, discard) {
      let p = running.get(key)
      if (p === undefined) {
        p = run(key, fetch, discard).finally(() => {
          running.delete(key)
          stale.delete(key)
        })
        running.set(key, p)
      }
      return p
    },
    changed(keys, all) {
      if (all) {
        missing.clear()
        for (const key of running.keys()) stale.add(key)
      }
      for (const key of keys) {
        missing.delete(key)
        if (running.has(key)) stale.add(key)
      }
    },
    get size() {
      return missing.size
    },
    async settled() {
      await Promise.allSettled([...running.values()])
    },
  }
}
