/**
 * Tasks (`handleTask`, when the build exports it) on an app child's
 * workers: they wait in a queue of their own and take a worker only when no
 * request is waiting and fewer than `taskConcurrency` tasks run, so requests
 * always go first. A task past `--task-timeout` fails and its worker is
 * terminated (and replaced), like a request.
 */
import type { Logger } from '../../lib/core/log.js'
import { isFree, type Generation, type Slot, type TaskJob } from './pool-state.js'
import type { TaskOutcome, WireTask } from './protocol.js'

export interface TaskSlotsOptions {
  /** Tasks running at once, at most (0: none). */
  readonly taskConcurrency: number
  readonly taskTimeoutMs: number
  readonly log: Logger
}

/** What the task slots need of the rest of the pool. */
export interface TaskHost {
  closing(): boolean
  /** Hands the task to the worker. */
  send(slot: Slot, task: WireTask): void
  /** Stops a worker running a timed-out task (and replaces it). */
  terminate(slot: Slot): void
}

export class TaskSlots {
  private readonly waiting: TaskJob[] = []
  running = 0
  /** Since start: tasks failed for --task-timeout. */
  timeouts = 0

  constructor(private readonly opts: TaskSlotsOptions, private readonly host: TaskHost) {}

  get queued(): number {
    return this.waiting.length
  }

  /** Queues a task and starts what may start on `current`'s workers. */
  add(task: WireTask, done: (outcome: TaskOutcome) => void, current: Generation): void {
    this.waiting.push({ task, done, timer: null, slot: null, finished: false })
    this.startAll(current)
  }

  /** Takes back a task that has not started; false when it runs (or ran). */
  drop(id: string): boolean {
    const i = this.waiting.findIndex((job) => job.task.id === id)
    if (i < 0) return false
    this.waiting.splice(i, 1)
    return true
  }

  /** Gives `slot` the next task if tasks may run now (no request waits: the pool served those first). */
  start(slot: Slot): void {
    if (this.host.closing() || this.running >= this.opts.taskConcurrency || !slot.gen.handlesTasks || !isFree(slot)) return
    const job = this.waiting.shift()
    if (job === undefined) return
    slot.task = job
    job.slot = slot
    this.running++
    job.timer = setTimeout(() => this.timedOut(job), this.opts.taskTimeoutMs)
    this.host.send(slot, job.task)
  }

  /** Ends a task once; frees its worker (the caller decides what the worker does next). */
  end(job: TaskJob, outcome: TaskOutcome): Slot | null {
    if (job.finished) return null
    job.finished = true
    if (job.timer) clearTimeout(job.timer)
    const slot = job.slot
    if (slot !== null) {
      slot.task = null
      this.running--
    }
    job.done(outcome)
    return slot
  }

  /** Tasks not started are released (draining). */
  releaseAll(): void {
    for (const job of this.waiting.splice(0)) this.end(job, { result: 'released' })
  }

  private timedOut(job: TaskJob): void {
    this.timeouts++
    const slot = this.end(job, { result: 'failed', error: `handleTask did not finish within ${this.opts.taskTimeoutMs} ms (the worker was terminated)` })
    if (slot === null) return
    this.opts.log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, task: job.task.id, name: job.task.name, timeoutMs: this.opts.taskTimeoutMs }, 'app task timed out: terminating its worker')
    this.host.terminate(slot)
  }

  /** Starts queued tasks on free workers of the current build (no request can be waiting while one is free). */
  startAll(current: Generation | null): void {
    if (current === null) return
    if (!current.handlesTasks) return this.releaseAll()
    for (const slot of current.slots) {
      if (this.waiting.length === 0 || this.running >= this.opts.taskConcurrency) return
      this.start(slot)
    }
  }
}
