/**
 * An app child's task consumer: while the current build exports
 * `handleTask`, it leases tasks from the queue in batches, hands them to the
 * worker pool (which runs them on idle workers only, at most
 * `--task-concurrency` at once), renews the leases of every task it holds
 * every third of `--task-lease`, and settles each outcome (done; failed →
 * retried after `--task-backoff` × 2^(attempt-1), dead after the last
 * attempt; released). Settlements are sent in batches.
 *
 * A child that dies holding tasks loses nothing: their leases expire and
 * other consumers (or this node, restarted) run them again. On drain it
 * stops leasing, gives back what has not started, and lets running tasks
 * finish within the drain. A drained node that stays up (`admin drain
 * --then idle`) leases nothing and gives back what has not started, and
 * takes tasks again once undrained.
 */
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import { createWakeablePause } from '../../lib/core/wakeable-pause.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { createMetaTaskQueue, type MetaRequester } from '../../lib/tasks/queue-meta.js'
import { backoff, type LeasedTask, type Settlement } from '../../lib/tasks/task.js'
import type { WorkerPool } from './pool.js'
import type { TaskOutcome } from './protocol.js'

/** Redis with `--redis`; otherwise the seed's embedded queue, reached through `seed` (the parent's seed link). */
export async function createAppTaskQueue(config: NodeConfig, log: Logger, seed: MetaRequester): Promise<TaskQueue> {
  if (config.redis === null) return createMetaTaskQueue(seed)
  return (await import('../../lib/tasks/queue-redis.js')).createRedisTaskQueue({ url: config.redis, log })
}

export interface TaskConsumerOptions {
  readonly queue: TaskQueue
  readonly pool: WorkerPool
  readonly log: Logger
  readonly concurrency: number
  readonly leaseMs: number
  readonly backoffMs: number
  /**
   * True while the node is drained (`admin drain`): no new leases, and tasks
   * leased but not started go back to the queue at once (released, the attempt
   * not counted) for another node; leasing resumes when it turns false.
   */
  readonly paused?: () => boolean
  /**
   * Work on the main thread before a task reaches a worker (the mail handoff parses the message: mail-handoff.ts); null: none.
   * `{skip}`: the task is not run and is settled done (the mail handoff of a message another task hands, or one swept); the reason is logged.
   */
  readonly prepare?: (task: LeasedTask) => Promise<LeasedTask | { readonly skip: string }> | null
  /**
   * Told each task's outcome (not `released`) as it is settled (the mail handoff notes it on the message's record).
   * It may settle the task itself (the mail handoff, with its note: one seed op for both): a promise of true; false,
   * a rejection or no promise leaves it to the consumer's batched settle.
   */
  readonly settled?: (task: LeasedTask, outcome: TaskOutcome, settlement: Settlement) => Promise<boolean> | undefined | void
}

export interface TaskConsumer {
  /** Something may be ready now (this child enqueued, a build with handleTask arrived): lease without waiting out the poll. */
  poke(): void
  /** Stops leasing; tasks not started are released by the pool as it closes. */
  stop(): void
  /** After the pool closed: sends the last settlements and stops renewing. */
  close(): Promise<void>
}

/** A lease call waits this long for a task before it asks again (the embedded queue parks it in the seed; Redis waits on its wake channel). */
const WAIT_MS = 2000
const RETRY_MS = 1000
/** Tasks that run faster than this on average let the consumer lease ahead (batches); slower ones are leased one per free slot. */
const FAST_MS = 100
/**
 * Leased ahead: about this much work per child (by the tasks' average run
 * time), at most 64 per task slot and {@link MAX_AHEAD}. Quick tasks then go
 * in batches of dozens, one lease and one settlement each (what bounds a
 * drain is their round trips to the queue); slower ones are held only as
 * many as the child gets through in that time, so other nodes still get them.
 */
const AHEAD_MS = 250
const MAX_AHEAD = 256

export function startTaskConsumer(opts: TaskConsumerOptions): TaskConsumer {
  const { queue, pool, log, concurrency, leaseMs } = opts
  /** Leased and not settled yet (queued in the pool or running). */
  const held = new Map<string, LeasedTask>()
  let outbox: Settlement[] = []
  /** Settlements a `settled` hook is making itself (the mail handoff's, with its note); close() waits for them. */
  const settling = new Set<Promise<void>>()
  let flushing: Promise<void> | null = null
  let stopped = false
  /** Average run time, from when a slot was free for the task to its outcome; a guess until tasks finish. */
  let avgMs = FAST_MS / 4
  /** When the last `concurrency` tasks finished: a task queued in this child starts when a slot frees, not when it was leased. */
  const freed: number[] = []
  let unreachable = false

  const { pause, wake: signal } = createWakeablePause()

  /** How many tasks this child wants to hold: one per task slot, plus a batch ahead while tasks are quick. */
  const target = (): number =>
    concurrency + (avgMs < FAST_MS ? Math.min(MAX_AHEAD, concurrency * 64, Math.ceil((concurrency * AHEAD_MS) / Math.max(1, avgMs))) : 0)

  function settleLater(settlement: Settlement): void {
    outbox.push(settlement)
    if (outbox.length === 1) setImmediate(flush)
  }

  function finished(task: LeasedTask, started: number, outcome: TaskOutcome): void {
    held.delete(task.id)
    if (outcome.result === 'failed') {
      const last = task.attempt >= task.attempts
      log.warn({ task: task.id, name: task.name, attempt: task.attempt, attempts: task.attempts, error: outcome.error },
        last ? `task ${task.id} failed its last attempt: dead letter` : `task ${task.id} failed; retrying`)
    }
    const settlement: Settlement = outcome.result === 'failed'
      ? { id: task.id, attempt: task.attempt, result: 'failed', error: outcome.error, retryInMs: backoff(opts.backoffMs, task.attempt) }
      : { id: task.id, attempt: task.attempt, result: outcome.result }
    let own: Promise<boolean> | undefined | void
    if (outcome.result !== 'released') {
      const now = performance.now()
      // It could start once leased and a slot was free: the oldest of the last `concurrency` finishes (slots all busy until then).
      const from = Math.max(started, freed.length < concurrency ? 0 : freed[0]!)
      freed.push(now)
      if (freed.length > concurrency) freed.shift()
      avgMs = avgMs * 0.9 + (now - from) * 0.1
      own = opts.settled?.(task, outcome, settlement)
    }
    if (own instanceof Promise) {
      const done: Promise<void> = own.then((settled) => (settled ? undefined : settleLater(settlement)), () => settleLater(settlement)).finally(() => settling.delete(done))
      settling.add(done)
    } else {
      settleLater(settlement)
    }
    if (held.size <= target() / 2) signal()
  }

  function flush(): void {
    if (flushing !== null || outbox.length === 0) return
    const batch = outbox.splice(0, 1000)
    flushing = (async () => {
      try {
        const lost = await queue.settle(batch)
        if (lost.length > 0) log.warn({ lost: lost.slice(0, 20), count: lost.length }, 'task leases expired before their results were reported: those tasks run again')
      } catch (err) {
        // Not reported: the leases expire and the tasks run again (at least once).
        log.warn({ err, count: batch.length }, 'could not report task results; their leases will expire and they run again')
      }
    })().finally(() => {
      flushing = null
      if (outbox.length > 0) flush()
    })
  }

  /** Drained: what is held but not started goes back to the queue now, for other nodes to run. */
  function releaseUnstarted(): void {
    let released = 0
    for (const task of [...held.values()]) {
      if (!pool.dropTask(task.id)) continue
      finished(task, performance.now(), { result: 'released' })
      released++
    }
    if (released > 0) log.info({ released }, 'node drained: tasks not started given back to the queue')
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      if (opts.paused?.()) {
        releaseUnstarted()
        await pause(RETRY_MS)
        continue
      }
      const room = target() - held.size
      if (concurrency === 0 || !pool.handlesTasks || room <= 0 || (held.size > 0 && room < target() / 2)) {
        await pause(RETRY_MS)
        continue
      }
      let tasks: LeasedTask[]
      try {
        tasks = await queue.lease({ max: room, leaseMs, waitMs: held.size > 0 ? 0 : WAIT_MS })
        if (unreachable) log.info('task queue reachable again')
        unreachable = false
      } catch (err) {
        if (!unreachable) log.warn({ err }, 'task queue unreachable; retrying')
        unreachable = true
        await pause(RETRY_MS)
        continue
      }
      for (const task of tasks) {
        if (stopped) {
          finished(task, performance.now(), { result: 'released' })
          continue
        }
        held.set(task.id, task)
        const started = performance.now()
        const prepared = opts.prepare?.(task) ?? null
        if (prepared === null) pool.runTask(task, (outcome) => finished(task, started, outcome))
        else {
          prepared.then((t) => {
            if (!('skip' in t)) return pool.runTask(t, (outcome) => finished(task, started, outcome))
            log.info({ task: task.id, name: task.name }, `task ${task.id} settled without running: ${t.skip}`)
            finished(task, started, { result: 'done' })
          }, (err: unknown) => finished(task, started, { result: 'failed', error: err instanceof Error ? err.message : String(err) }))
        }
      }
      // Held tasks and nothing new: wait for a slot to free (finished() signals) instead of spinning.
      if (tasks.length === 0 && held.size > 0) await pause(RETRY_MS)
    }
  }

  const renewal = setInterval(() => {
    if (held.size === 0) return
    const refs = [...held.values()].map((t) => ({ id: t.id, attempt: t.attempt }))
    queue.extend(refs, leaseMs).then(
      (lost) => {
        for (const id of lost) {
          // Not started yet: someone else has it now. Running: let it finish; its result will be ignored.
          if (pool.dropTask(id)) held.delete(id)
        }
      },
      (err: unknown) => log.warn({ err }, 'could not renew task leases'),
    )
  }, Math.max(100, Math.floor(leaseMs / 3)))
  renewal.unref()

  const running = loop()
  return {
    poke: signal,
    stop() {
      stopped = true
      signal()
    },
    async close() {
      stopped = true
      signal()
      await running
      // The hooks' own settlements first: one that could not settle hands its task to the outbox.
      while (settling.size > 0) await Promise.all(settling)
      flush()
      while (flushing !== null) await flushing
      clearInterval(renewal)
    },
  }
}
