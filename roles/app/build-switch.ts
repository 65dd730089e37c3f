/**
 * How an app child follows builds: loads run one at a time (files to disk,
 * then a generation of workers); a staged build waits beside the current one
 * until the seed activates it, and the swap is then synchronous, so the node
 * answers with the new build the moment it reports it. A build refused while
 * it was only being staged is the seed's business (it was never current);
 * one refused when loaded straight away is logged and reported here.
 */
import type { BuildPush } from '../../lib/builds/manifest.js'
import { toWire } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import type { BuildFollower } from '../../lib/process/follow-build.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import { materializeBuild } from './build-files.js'
import type { WorkerPool } from './pool.js'
import type { AppToParent } from './server.js'

export interface AppBuildSwitchOptions {
  readonly store: BlobStore
  readonly pool: WorkerPool
  readonly dataDir: string
  readonly threads: number
  readonly log: Logger
  readonly send: (msg: AppToParent) => void
  /** A build became current (tasks may run on it). */
  readonly onServing: () => void
}

export function createAppBuildSwitch(opts: AppBuildSwitchOptions): BuildFollower {
  const { store, pool, log } = opts
  let wanted: string | null = null
  let chain: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn)
    chain = run.catch(() => {})
    return run
  }
  /** Builds the seed cancelled while they were still loading here: dropped as soon as they are staged. */
  const cancelled = new Set<string>()

  function serving(id: string, started: number): void {
    opts.onServing()
    log.info({ build: id, threads: opts.threads, ms: Math.round(performance.now() - started) }, 'app build serving')
    opts.send({ t: 'serving', id })
  }

  return {
    stage(push) {
      cancelled.delete(push.id)
      return serial(async () => {
        if (pool.build === push.id || cancelled.has(push.id)) return
        const started = performance.now()
        const build = await materializeBuild(store, push, opts.dataDir)
        if (cancelled.has(push.id)) return
        await pool.stage(build)
        if (cancelled.has(push.id)) return pool.discard(push.id)
        log.info({ build: push.id, threads: opts.threads, ms: Math.round(performance.now() - started) }, 'app build staged')
      })
    },
    activate(id) {
      const started = performance.now()
      if (!pool.activate(id)) return false
      wanted = id
      serving(id, started)
      return true
    },
    discard(id) {
      cancelled.add(id)
      pool.discard(id)
    },
    apply(push: BuildPush) {
      if (push.id === wanted) return
      wanted = push.id
      cancelled.delete(push.id)
      void serial(async () => {
        if (wanted !== push.id || pool.build === push.id) return
        const started = performance.now()
        // Staged while this load waited its turn: the swap is all that is left.
        if (pool.activate(push.id)) return serving(push.id, started)
        try {
          await pool.load(await materializeBuild(store, push, opts.dataDir))
          serving(push.id, started)
        } catch (err) {
          const wire = toWire(err)
          log.error({ err, build: push.id, code: wire.code, keeping: pool.build }, `app build ${push.id} refused; still serving ${pool.build ?? 'nothing'}`)
          opts.send({ t: 'load-failed', id: push.id, code: wire.code, message: wire.message })
        }
      })
    },
  }
}
