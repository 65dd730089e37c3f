/**
 * The worker pool of one app child: a small façade over its parts.
 *
 * - roles/app/generations.ts: workers by generation (one build). Only the
 *   current generation takes requests; a new one becomes current only once
 *   every one of its workers loaded the build and ran `init` (a deploy
 *   stages it, then activates it); the old one retires, each worker
 *   finishing what it holds; a dead or terminated worker is replaced.
 * - roles/app/request-queue.ts: the bounded queue (past it 503), the
 *   requests handed ahead to busy workers and `--request-timeout`.
 * - roles/app/claim-gate.ts: the shared-memory cells through which a worker
 *   claims a request handed to it and this thread takes one back, so a
 *   request never runs twice and is never lost.
 * - roles/app/task-slots.ts: tasks, on idle workers only, after requests.
 * - roles/app/slot-ring.ts, roles/app/slot-codec.ts: each worker's two rings
 *   of slots in shared memory, requests to it and whole responses from it
 *   as bytes (what does not fit goes as a message).
 *
 * Here: what a worker's answer means for its request (answered, streamed,
 * failed), what its exit means for what it held, and what a free worker
 * takes next.
 */
import { toWire, type ErrorCode } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import type { BuildOnDisk } from './build-files.js'
import { Generations } from './generations.js'
import type { Job, ResponseSink, Slot } from './pool-state.js'
import type { AppVisibleConfig, FromWorker, PlatformOp, TaskOutcome, ToWorker, WireRequest, WireTask } from './protocol.js'
import { AHEAD, RequestQueue } from './request-queue.js'
import { decodeResponse, encodeRequest, type SlotResponse } from './slot-codec.js'
import { TaskSlots } from './task-slots.js'
import { WakeBatch } from './wake-batch.js'

export interface PoolOptions {
  readonly threads: number
  readonly queueSize: number
  readonly requestTimeoutMs: number
  readonly log: Logger
  readonly child: number
  readonly logLevel: string
  readonly tokenKey: Uint8Array
  readonly appConfig: (build: string) => AppVisibleConfig
  /** Runs a worker's platform call (`ctx.publish`, `ctx.tables.*`) on the main thread. */
  readonly call: (op: PlatformOp, args: unknown[]) => Promise<unknown>
  /** Tasks running at once, at most (0: none). */
  readonly taskConcurrency: number
  readonly taskTimeoutMs: number
  /** A new build's workers must all have run `init` within this, or the build is refused. */
  readonly initTimeoutMs: number
  /** A ready worker exited by itself (not retired, not terminated by the pool): counted for canary deploys. */
  readonly onWorkerCrash?: (build: string) => void
}

export interface PoolStats {
  build: string | null
  workers: number
  busy: number
  queued: number
  tasksRunning: number
  tasksQueued: number
  /** Since start (counters for metrics): requests answered 504 for --request-timeout, tasks failed for --task-timeout, requests refused 503 busy. */
  requestTimeouts: number
  taskTimeouts: number
  refusedBusy: number
}

export interface WorkerPool {
  /** The build taking requests (null: none yet). */
  readonly build: string | null
  submit(req: WireRequest, sink: ResponseSink): void
  /** Whether the current build exports handleTask. */
  readonly handlesTasks: boolean
  /**
   * Runs a task on an idle worker when no request waits (queued until then);
   * `done` is told once: ok, failed (threw, timed out, worker died) or
   * released (never started: draining, or the build no longer has handleTask).
   */
  runTask(task: WireTask, done: (outcome: TaskOutcome) => void): void
  /** Takes back a task that has not started; false when it runs (or ran). */
  dropTask(id: string): boolean
  /** Starts the build's workers and makes them current; rejects with `ESPRA_ERR_APP_INIT` or `ESPRA_ERR_BUILD_INIT_TIMEOUT` and keeps the old build. */
  load(build: BuildOnDisk): Promise<void>
  /**
   * Starts the build's workers beside the current ones (no request reaches
   * them) and resolves once every one ran `init`; rejects like `load`, its
   * workers terminated. A build staged before is dropped first.
   */
  stage(build: BuildOnDisk): Promise<void>
  /** Makes the staged build `id` current now; false when it is not (or not yet) staged. */
  activate(id: string): boolean
  /** Drops the staged (or staging) build `id`: its workers are terminated; a `stage` in progress rejects. */
  discard(id: string): void
  stats(): PoolStats
  /** Retires every worker (each finishes what it holds and runs destroy). */
  close(): Promise<void>
  /** Terminates every worker now. */
  destroy(): void
}

/** The error codes whose own message reaches the client (ours); the app's own error text never does. */
const PLATFORM_MESSAGES = new Set(['ESPRA_ERR_APP_RESPONSE', 'ESPRA_ERR_TASK_UNAVAILABLE', 'ESPRA_ERR_DATASTORE_UNAVAILABLE'])

export function createWorkerPool(opts: PoolOptions): WorkerPool {
  const { log } = opts
  const send = (slot: Slot, msg: ToWorker): void => slot.worker.postMessage(msg)
  const gens: Generations = new Generations({ ...opts, gateCells: AHEAD + 1 }, {
    message: (slot, msg) => onMessage(slot, msg),
    started: (slot) => listen(slot),
    exit: (slot, code) => onExit(slot, code),
    replaced: (slot) => idle(slot),
  })
  const closing = (): boolean => gens.closing
  const terminate = (slot: Slot): void => gens.terminate(slot)
  const retire = (slot: Slot): void => gens.retire(slot, (s) => send(s, { t: 'destroy' }))
  const requests = new RequestQueue(opts, {
    current: () => gens.current,
    closing,
    send: sendRequest,
    terminate,
    idle: (slot) => idle(slot),
  })
  const tasks = new TaskSlots(opts, { closing, send: (slot, task) => send(slot, { t: 'task', task }), terminate })
  const wakes = new WakeBatch()

  /** Through the worker's request ring, or as a message when it does not fit (or the ring is full); the worker runs them in `seq` order. */
  function sendRequest(slot: Slot, job: Job): void {
    const seq = slot.seq = (slot.seq + 1) >>> 0
    const buf = slot.requests.free()
    const length = buf === null ? -1 : encodeRequest(buf, { seq, id: job.id, cell: job.cell, req: job.req })
    if (length < 0) return send(slot, { t: 'req', seq, id: job.id, cell: job.cell, req: job.req })
    // Only the first request since the worker went to sleep wakes it, at the end of this turn; it reads the others with it.
    if (slot.requests.publish(length)) wakes.add(slot.requests)
  }

  /** The whole responses in the worker's ring, in order; how many. */
  function readResponses(slot: Slot): number {
    const ring = slot.responses
    let read = 0
    for (let buf = ring.read(); buf !== null; buf = ring.read(), read++) {
      const res = decodeResponse(buf)
      ring.consume()
      answered(slot, res)
    }
    return read
  }

  /**
   * Reads the worker's responses until its thread ends. While answers keep
   * coming it looks again at the next turn of the event loop without asking
   * to be woken (answers written meanwhile cost the worker no wake-up and
   * this thread no extra task); after a turn with none it sleeps until the
   * worker's next answer wakes it.
   */
  function listen(slot: Slot): void {
    const read = readResponses(slot)
    if (!gens.every.has(slot)) return
    if (read > 0) return void setImmediate(listen, slot)
    const wait = slot.responses.sleep()
    if (wait === null) return void setImmediate(listen, slot)
    void wait.then(() => listen(slot))
  }

  /** A worker finished something: it takes what waits, or retires once it holds nothing if its build was replaced. */
  function idle(slot: Slot): void {
    if (slot.gone) return
    if (slot.gen !== gens.current || gens.closing) {
      if (slot.held.length === 0) retire(slot)
      return
    }
    requests.pump()
    tasks.start(slot)
  }

  /** The request `id` the worker holds. By id, not by place: an answer through the ring may overtake the message of the one before it. */
  function heldJob(slot: Slot, id: number): Job | undefined {
    for (const job of slot.held) if (job.id === id) return job
    return undefined
  }

  /** A whole response, from the ring or as a message: the last word on its request; the worker moves on to the next one it holds. */
  function answered(slot: Slot, res: SlotResponse): void {
    const job = heldJob(slot, res.id)
    if (job === undefined) return
    requests.release(slot, job)
    if (job.done) return
    requests.finish(job)
    if (!job.sink.aborted) job.sink.whole(res.status, res.headers, res.body, slot.gen.build.id)
    idle(slot)
  }

  function onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.t === 'task-done') {
      const job = slot.task
      if (job === null || job.task.id !== msg.id) return
      tasks.end(job, msg.ok ? { result: 'done' } : { result: 'failed', error: msg.error })
      return idle(slot)
    }
    if (msg.t === 'call') {
      opts.call(msg.op, msg.args).then(
        (value) => send(slot, { t: 'result', id: msg.id, ok: true, value }),
        (err: unknown) => {
          const wire = toWire(err)
          send(slot, { t: 'result', id: msg.id, ok: false, code: wire.code, message: wire.message })
        },
      )
      return
    }
    if (msg.t === 'res') return answered(slot, msg)
    if (msg.t !== 'head' && msg.t !== 'chunk' && msg.t !== 'end' && msg.t !== 'error') return
    const job = heldJob(slot, msg.id)
    if (job === undefined) return
    // The last message of a request: the worker moves on to the next one it holds.
    if (msg.t === 'end' || msg.t === 'error') requests.release(slot, job)
    if (job.done) return
    const build = slot.gen.build.id
    const sink = job.sink
    switch (msg.t) {
      case 'head':
        if (!sink.aborted) sink.head(msg.status, msg.headers, build)
        return
      case 'chunk':
        if (sink.aborted) return send(slot, { t: 'pull', id: msg.id, stop: true })
        sink.chunk(msg.data, (ok) => {
          if (job.slot === slot && !job.done) send(slot, { t: 'pull', id: msg.id, stop: !ok })
        })
        return
      case 'end':
        requests.finish(job)
        if (!sink.aborted) sink.end()
        return idle(slot)
      case 'error':
        requests.finish(job)
        // Our own messages pass through (an invalid response, the task queue down); the app's own error text never does.
        if (!sink.aborted) sink.fail(msg.code as ErrorCode, PLATFORM_MESSAGES.has(msg.code) ? msg.message : 'the application failed to handle the request', { errorId: msg.errorId })
        return idle(slot)
    }
  }

  /** A worker's thread ended: its task failed, what it had not started goes to others, what it ran failed. */
  function onExit(slot: Slot, code: number): void {
    // Answers it wrote before it ended are answers; then its listener stops.
    readResponses(slot)
    slot.responses.wake()
    if (slot.task !== null) {
      const task = slot.task
      log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, code, task: task.task.id }, 'app worker exited while running a task')
      tasks.end(task, { result: 'failed', error: `the worker exited (code ${code}) while running the task` })
    }
    requests.handBack(slot)
    // What is left was claimed: the request it ran (and, rarely, one answered by a message that never came).
    for (const job of slot.held.filter((held) => !held.done)) {
      log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, code }, 'app worker exited while handling a request')
      requests.fail(job, 'ESPRA_ERR_APP_HANDLER', 'the application worker exited while handling the request')
    }
  }

  return {
    get build() {
      return gens.current?.build.id ?? null
    },
    get handlesTasks() {
      return gens.current?.handlesTasks ?? false
    },
    runTask(task, done) {
      const current = gens.current
      if (gens.closing || current === null || !current.handlesTasks) return done({ result: 'released' })
      tasks.add(task, done, current)
    },
    dropTask: (id) => tasks.drop(id),
    submit(req, sink) {
      if (gens.closing) return sink.fail('ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      if (gens.current === null) return sink.fail('ESPRA_ERR_APP_NO_BUILD', 'no app build loaded yet')
      requests.submit(req, sink)
    },
    async load(build) {
      await this.stage(build)
      this.activate(build.id)
    },
    stage: (build) => gens.stage(build, (slots) => slots.forEach(retire)),
    activate(id) {
      const swapped = gens.activate(id)
      if (swapped === undefined) return false
      for (const slot of swapped.old?.slots ?? []) if (slot.held.length === 0 && slot.task === null) retire(slot)
      requests.pump()
      tasks.startAll(gens.current)
      return true
    },
    discard: (id) => gens.discard(id),
    stats() {
      const current = gens.current
      let busy = 0
      for (const slot of current?.slots ?? []) if (slot.held.length > 0 || slot.task !== null) busy++
      return {
        build: current?.build.id ?? null, workers: current?.slots.size ?? 0, busy, queued: requests.length,
        tasksRunning: tasks.running, tasksQueued: tasks.queued, requestTimeouts: requests.timeouts, taskTimeouts: tasks.timeouts, refusedBusy: requests.refusedBusy,
      }
    },
    async close() {
      gens.closing = true
      // Queued requests and those handed ahead and not started get 503; running ones finish, and so do tasks (their workers retire after).
      requests.refuseAll(gens.every)
      tasks.releaseAll()
      for (const slot of gens.current?.slots ?? []) if (slot.held.length === 0 && slot.task === null) retire(slot)
      gens.close()
      await gens.exited()
    },
    destroy: () => gens.destroy(),
  }
}
