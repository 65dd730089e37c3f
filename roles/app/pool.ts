/**
 * The worker pool of one app child. Workers belong to a generation (one
 * build); only the current generation takes requests, and a generation
 * becomes current only once every one of its workers has loaded the build
 * and run `init` (no request meets a half-loaded build). Requests wait for
 * an idle worker in a bounded queue; past it they get 503.
 *
 * A swap starts a whole new generation beside the old one; when it is ready
 * it becomes current and the queue drains into it, while each old worker
 * finishes the requests it holds, runs `destroy` and exits. A generation that
 * fails to start is terminated and the old one keeps serving.
 *
 * A deploy splits the swap in two (`stage`, then `activate`): the new
 * generation starts and runs `init` beside the current one, under
 * `--init-timeout` (past it its workers are terminated: the only way to stop
 * `for(;;){}`), and waits; `activate` then makes it current synchronously,
 * so every child of every node can swap the moment the seed says so.
 *
 * While every worker is busy, each one is also handed the next few waiting
 * requests (`AHEAD`), so a worker does not sleep between requests under load
 * and wakes less often; it still runs them one at a time, in order. A request
 * handed over is only offered: the worker claims it with an atomic
 * compare-and-swap on memory it shares with this thread when it starts it,
 * and this thread can take it back with the same swap until then (whoever
 * swaps first wins, so a request never runs twice and is never lost). Taken
 * back: by an idle worker when nothing is queued (it runs the request
 * instead), when it times out before it started, when its worker ends, and
 * on drain.
 *
 * A request unanswered after `--request-timeout` gets 504; a worker that
 * runs it is terminated (the only way to stop a loop) and replaced.
 *
 * Tasks (`handleTask`, when the build exports it) wait in a queue of their
 * own and take a worker only when no request is waiting and fewer than
 * `taskConcurrency` tasks run: requests always go first. A task past
 * `--task-timeout` fails and its worker is replaced, like a request.
 */
import { Worker } from 'node:worker_threads'
import { EspraError, toWire, type ErrorCode } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import type { BuildOnDisk } from './build-files.js'
import type { AppVisibleConfig, FromWorker, PlatformOp, TaskOutcome, ToWorker, WireRequest, WireTask, WorkerStart } from './protocol.js'

const WORKER_URL = new URL('./worker.js', import.meta.url)
const DESTROY_GRACE_MS = 5000
const RESPAWN_DELAY_MS = 1000
/**
 * Requests handed to a busy worker ahead of the one it runs: enough that a
 * worker seldom sleeps between requests under load (bench/app-dispatch, 2 × 2:
 * 4 gave about 11% more req/s than 1), few enough that little waits behind a
 * slow request (an idle worker takes them back when nothing is queued).
 */
const AHEAD = 4

/** Where a request's answer goes (the HTTP layer implements it). */
export interface ResponseSink {
  /** The client went away: drop whatever comes. */
  readonly aborted: boolean
  whole(status: number, headers: [string, string][], body: Uint8Array, build: string): void
  head(status: number, headers: [string, string][], build: string): void
  /** Writes a chunk; `more` runs once the client can take the next one (false: it is gone). */
  chunk(data: Uint8Array, more: (ok: boolean) => void): void
  end(): void
  /** An error answer (or, once a streamed head went out, a cut connection). */
  fail(code: ErrorCode, message: string, extra?: Record<string, unknown>): void
}

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

interface TaskJob {
  readonly task: WireTask
  readonly done: (outcome: TaskOutcome) => void
  timer: NodeJS.Timeout | null
  slot: Slot | null
  finished: boolean
}

interface Job {
  /** Its offer to a worker: the id on the wire and in the gate (new at each offer, so a stale one never matches). */
  id: number
  readonly req: WireRequest
  readonly sink: ResponseSink
  timer: NodeJS.Timeout | null
  /** The worker it was handed to (null: queued). */
  slot: Slot | null
  /** The cell of that worker's gate it was offered in. */
  cell: number
  done: boolean
}

interface Generation {
  readonly build: BuildOnDisk
  readonly slots: Set<Slot>
  retired: boolean
  /** The build's module exports handleTask (its workers said so when ready). */
  handlesTasks: boolean
}

interface Slot {
  readonly worker: Worker
  readonly gen: Generation
  /** One cell per request held and not claimed yet: the request's id, 0 once claimed or taken back. */
  readonly gate: Int32Array
  ready: boolean
  /** The requests handed to the worker, in order: the first runs (or starts first), the others wait for it. */
  readonly held: Job[]
  task: TaskJob | null
  gone: boolean
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

export function createWorkerPool(opts: PoolOptions): WorkerPool {
  const { log } = opts
  let current: Generation | null = null
  /** The generation started by `stage`, not taking requests: `ready` once every worker ran init. */
  let staged: { gen: Generation; ready: boolean } | null = null
  const queue: Job[] = []
  const taskQueue: TaskJob[] = []
  let tasksRunning = 0
  let requestTimeouts = 0
  let taskTimeouts = 0
  let refusedBusy = 0
  let offers = 0
  /** Requests handed ahead to a busy worker: they count against the queue's bound. */
  let ahead = 0
  let closing = false
  const exits = new Set<Promise<void>>()
  const every = new Set<Slot>()

  function spawn(gen: Generation): Slot {
    const gate = new SharedArrayBuffer((AHEAD + 1) * Int32Array.BYTES_PER_ELEMENT)
    const start: WorkerStart = {
      entry: gen.build.entry, build: gen.build.id, config: opts.appConfig(gen.build.id),
      logLevel: opts.logLevel, child: opts.child, tokenKey: opts.tokenKey, gate,
    }
    const worker = new Worker(WORKER_URL, { workerData: start })
    const slot: Slot = { worker, gen, gate: new Int32Array(gate), ready: false, held: [], task: null, gone: false }
    gen.slots.add(slot)
    every.add(slot)
    let exited!: () => void
    const exit = new Promise<void>((resolve) => (exited = resolve))
    exits.add(exit)
    worker.on('message', (msg: FromWorker) => onMessage(slot, msg))
    worker.on('error', (err) => log.error({ err, build: gen.build.id, thread: worker.threadId }, 'app worker failed'))
    worker.on('exit', (code) => {
      exits.delete(exit)
      exited()
      onExit(slot, code)
    })
    return slot
  }

  function send(slot: Slot, msg: ToWorker): void {
    slot.worker.postMessage(msg)
  }

  function finish(job: Job): void {
    job.done = true
    if (job.timer) clearTimeout(job.timer)
  }

  /** Hands a request to a worker: to run (an idle worker) or to start once its current one is answered. */
  function offer(slot: Slot, job: Job): void {
    let cell = 0
    while (slot.held.some((held) => held.cell === cell)) cell++
    if (slot.held.length > 0) ahead++
    slot.held.push(job)
    job.slot = slot
    job.cell = cell
    // Gate values: 1 .. 2^31-1.
    offers = (offers % 0x7fffffff) + 1
    job.id = offers
    Atomics.store(slot.gate, cell, job.id)
    send(slot, { t: 'req', id: job.id, cell, req: job.req })
  }

  /** The worker no longer holds `job` (answered, or taken back): its next one moves up. */
  function release(slot: Slot, job: Job): void {
    if (slot.held.length > 1) ahead--
    slot.held.splice(slot.held.indexOf(job), 1)
    job.slot = null
  }

  /** Takes back a request its worker has not started; false once it has. */
  function takeBack(job: Job): boolean {
    const slot = job.slot!
    if (Atomics.compareExchange(slot.gate, job.cell, job.id, 0) !== job.id) return false
    release(slot, job)
    return true
  }

  /** The requests a worker holds but has not started go back to the head of the queue (or, draining, get 503). */
  function handBack(slot: Slot): void {
    const back = [...slot.held].filter((job) => !job.done && takeBack(job))
    if (closing) {
      for (const job of back) fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      return
    }
    if (back.length === 0) return
    log.info({ build: slot.gen.build.id, thread: slot.worker.threadId, requests: back.length }, 'requests an ended app worker had not started go to other workers')
    queue.unshift(...back)
    pump()
  }

  function fail(job: Job, code: ErrorCode, message: string): void {
    finish(job)
    if (!job.sink.aborted) job.sink.fail(code, message)
  }

  /** The oldest queued request still wanted. */
  function nextQueued(): Job | undefined {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
      if (!job.done && !job.sink.aborted) return job
      finish(job)
    }
    return undefined
  }

  /** A request offered to a busy worker that has not started it yet, taken back. */
  function takeAhead(): Job | undefined {
    for (const slot of current!.slots) {
      const job = slot.held.at(-1)
      if (slot.held.length > 1 && takeBack(job!)) return job
    }
    return undefined
  }

  /**
   * Moves waiting requests to the current build's workers: one to each idle
   * worker (when nothing is queued, one a busy worker has not started yet),
   * then up to AHEAD more to each worker busy with a request, evenly.
   */
  function pump(): void {
    if (current === null || closing) return
    for (const slot of current.slots) {
      if (!isFree(slot)) continue
      const job = nextQueued() ?? takeAhead()
      if (job === undefined) break
      offer(slot, job)
    }
    for (let depth = 1; depth <= AHEAD; depth++) {
      for (const slot of current.slots) {
        if (queue.length === 0) return
        if (!slot.ready || slot.gone || slot.held.length !== depth) continue
        const job = nextQueued()
        if (job !== undefined) offer(slot, job)
      }
    }
  }

  function retire(slot: Slot): void {
    if (slot.gone) return
    slot.gone = true
    send(slot, { t: 'destroy' })
    const timer = setTimeout(() => void slot.worker.terminate(), DESTROY_GRACE_MS)
    slot.worker.once('exit', () => clearTimeout(timer))
  }

  /** Stops a worker now (the only way to stop a loop) and starts a replacement if its build is current. */
  function terminate(slot: Slot): void {
    const replace = slot.gen === current && !closing && !slot.gone
    slot.gone = true
    slot.gen.slots.delete(slot)
    void slot.worker.terminate()
    if (replace) respawn(slot.gen)
  }

  /** A worker finished something: it takes what waits, or retires once it holds nothing if its build was replaced. */
  function idle(slot: Slot): void {
    if (slot.gone) return
    if (slot.gen !== current || closing) {
      if (slot.held.length === 0) retire(slot)
      return
    }
    pump()
    startTask(slot)
  }

  const isFree = (slot: Slot): boolean => slot.ready && !slot.gone && slot.held.length === 0 && slot.task === null

  /** Gives `slot` the next task if tasks may run now (no request waits: `idle` served those first). */
  function startTask(slot: Slot): void {
    if (closing || tasksRunning >= opts.taskConcurrency || !slot.gen.handlesTasks || !isFree(slot)) return
    const job = taskQueue.shift()
    if (job === undefined) return
    slot.task = job
    job.slot = slot
    tasksRunning++
    job.timer = setTimeout(() => taskTimedOut(job), opts.taskTimeoutMs)
    send(slot, { t: 'task', task: job.task })
  }

  /** Ends a task once; frees its worker (the caller decides what the worker does next). */
  function endTask(job: TaskJob, outcome: TaskOutcome): Slot | null {
    if (job.finished) return null
    job.finished = true
    if (job.timer) clearTimeout(job.timer)
    const slot = job.slot
    if (slot !== null) {
      slot.task = null
      tasksRunning--
    }
    job.done(outcome)
    return slot
  }

  function taskTimedOut(job: TaskJob): void {
    taskTimeouts++
    const slot = endTask(job, { result: 'failed', error: `handleTask did not finish within ${opts.taskTimeoutMs} ms (the worker was terminated)` })
    if (slot === null) return
    log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, task: job.task.id, name: job.task.name, timeoutMs: opts.taskTimeoutMs }, 'app task timed out: terminating its worker')
    terminate(slot)
  }

  /** Starts queued tasks on free workers of the current build (no request can be waiting while one is free). */
  function startTasks(): void {
    if (current === null) return
    if (!current.handlesTasks) {
      for (const job of taskQueue.splice(0)) endTask(job, { result: 'released' })
      return
    }
    for (const slot of current.slots) {
      if (taskQueue.length === 0 || tasksRunning >= opts.taskConcurrency) return
      startTask(slot)
    }
  }

  function onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.t === 'ready') slot.gen.handlesTasks = msg.tasks
    if (msg.t === 'loading' || msg.t === 'ready' || msg.t === 'init-failed' || msg.t === 'destroyed') return void slot.worker.emit('espra:' + msg.t, msg)
    if (msg.t === 'task-done') {
      const job = slot.task
      if (job === null || job.task.id !== msg.id) return
      endTask(job, msg.ok ? { result: 'done' } : { result: 'failed', error: msg.error })
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
    const job = slot.held[0]
    if (job === undefined || job.id !== msg.id) return
    // The last message of a request: the worker moves on to the next one it holds.
    if (msg.t === 'res' || msg.t === 'end' || msg.t === 'error') release(slot, job)
    if (job.done) return
    const build = slot.gen.build.id
    const sink = job.sink
    switch (msg.t) {
      case 'res':
        finish(job)
        if (!sink.aborted) sink.whole(msg.status, msg.headers, msg.body, build)
        return idle(slot)
      case 'head':
        if (!sink.aborted) sink.head(msg.status, msg.headers, build)
        return
      case 'chunk':
        if (sink.aborted) return send(slot, { t: 'pull', id: msg.id, stop: true })
        sink.chunk(msg.data, (ok) => {
          if (slot.held[0] === job && !job.done) send(slot, { t: 'pull', id: msg.id, stop: !ok })
        })
        return
      case 'end':
        finish(job)
        if (!sink.aborted) sink.end()
        return idle(slot)
      case 'error':
        finish(job)
        // Our own messages pass through (an invalid response, the task queue down); the app's own error text never does.
        if (!sink.aborted) sink.fail(msg.code as ErrorCode, msg.code === 'ESPRA_ERR_APP_RESPONSE' || msg.code === 'ESPRA_ERR_TASK_UNAVAILABLE' || msg.code === 'ESPRA_ERR_DATASTORE_UNAVAILABLE' ? msg.message : 'the application failed to handle the request', { errorId: msg.errorId })
        return idle(slot)
    }
  }

  function onExit(slot: Slot, code: number): void {
    const wasGone = slot.gone
    slot.gone = true
    slot.gen.slots.delete(slot)
    every.delete(slot)
    if (slot.task !== null) {
      const task = slot.task
      log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, code, task: task.task.id }, 'app worker exited while running a task')
      endTask(task, { result: 'failed', error: `the worker exited (code ${code}) while running the task` })
    }
    handBack(slot)
    const job = slot.held[0]
    if (job !== undefined && !job.done) {
      log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, code }, 'app worker exited while handling a request')
      fail(job, 'ESPRA_ERR_APP_HANDLER', 'the application worker exited while handling the request')
    }
    if (!wasGone && slot.ready) opts.onWorkerCrash?.(slot.gen.build.id)
    // Keep the current build at full strength: a worker that died (or was killed for a timeout) is replaced.
    if (!wasGone && slot.ready && (slot.gen === current || slot.gen === staged?.gen) && !closing) {
      log.warn({ build: slot.gen.build.id, thread: slot.worker.threadId, code }, 'app worker exited: starting a replacement')
      respawn(slot.gen)
    }
  }

  function respawn(gen: Generation): void {
    const slot = spawn(gen)
    slot.worker.once('espra:ready', () => {
      slot.ready = true
      log.info({ build: gen.build.id, thread: slot.worker.threadId }, 'app worker replaced')
      idle(slot)
    })
    slot.worker.once('espra:init-failed', (msg: { message: string }) => {
      log.error({ build: gen.build.id, message: msg.message }, 'replacement app worker failed to start; trying again')
      slot.gone = true
      void slot.worker.terminate()
      setTimeout(() => {
        if ((gen === current || gen === staged?.gen) && !closing) respawn(gen)
      }, RESPAWN_DELAY_MS).unref()
    })
  }

  /** Terminates the staged generation's workers (nothing was handed to them). */
  function dropStaged(): void {
    const gen = staged!.gen
    staged = null
    for (const slot of gen.slots) {
      slot.gone = true
      void slot.worker.terminate()
    }
  }

  function timeOut(job: Job): void {
    if (job.done) return
    const slot = job.slot
    requestTimeouts++
    fail(job, 'ESPRA_ERR_APP_TIMEOUT', `no answer within ${opts.requestTimeoutMs} ms`)
    if (slot === null) {
      const i = queue.indexOf(job)
      if (i >= 0) queue.splice(i, 1)
    } else if (slot.gone) {
      // Its worker was stopped already (for another request): nothing runs it.
    } else if (takeBack(job)) {
      // Its worker had not started it: that worker is fine and takes other work.
      idle(slot)
    } else {
      log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, method: job.req.method, path: job.req.path, timeoutMs: opts.requestTimeoutMs },
        'app request timed out: terminating its worker')
      terminate(slot)
      // The request it was to start next goes to another worker.
      handBack(slot)
    }
  }

  return {
    get build() {
      return current?.build.id ?? null
    },
    get handlesTasks() {
      return current?.handlesTasks ?? false
    },
    runTask(task, done) {
      if (closing || current === null || !current.handlesTasks) return done({ result: 'released' })
      taskQueue.push({ task, done, timer: null, slot: null, finished: false })
      startTasks()
    },
    dropTask(id) {
      const i = taskQueue.findIndex((job) => job.task.id === id)
      if (i < 0) return false
      taskQueue.splice(i, 1)
      return true
    },
    submit(req, sink) {
      if (closing) return sink.fail('ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      if (current === null) return sink.fail('ESPRA_ERR_APP_NO_BUILD', 'no app build loaded yet')
      if (queue.length + ahead >= opts.queueSize && ![...current.slots].some(isFree)) {
        refusedBusy++
        return sink.fail('ESPRA_ERR_APP_BUSY', 'every app worker is busy and the request queue is full')
      }
      const job: Job = { id: 0, req, sink, timer: null, slot: null, cell: 0, done: false }
      job.timer = setTimeout(() => timeOut(job), opts.requestTimeoutMs)
      queue.push(job)
      pump()
    },
    async load(build) {
      await this.stage(build)
      this.activate(build.id)
    },
    async stage(build) {
      if (staged !== null) dropStaged()
      const gen: Generation = { build, slots: new Set(), retired: false, handlesTasks: false }
      const mine = { gen, ready: false }
      staged = mine
      const slots = Array.from({ length: opts.threads }, () => spawn(gen))
      const timers: NodeJS.Timeout[] = []
      const ready = Promise.all(slots.map((slot) => new Promise<void>((resolve, reject) => {
        slot.worker.once('espra:ready', () => {
          slot.ready = true
          resolve()
        })
        slot.worker.once('espra:init-failed', (msg: { message: string }) => reject(new EspraError('ESPRA_ERR_APP_INIT', `build ${build.id} refused: ${msg.message}`, { build: build.id })))
        slot.worker.once('exit', (code) => reject(staged !== mine
          ? new EspraError('ESPRA_ERR_BUILD_REPLACED', `build ${build.id} was dropped while its workers started`, { build: build.id })
          : new EspraError('ESPRA_ERR_APP_INIT', `build ${build.id} refused: a worker exited (code ${code}) while starting`, { build: build.id })))
      })))
      // A worker stuck in init (`for(;;){}`) never answers: only terminate() stops it. Each worker's clock starts
      // when its build code starts loading (starting a thread on a busy machine is the platform's time, not the build's).
      const timedOut = new Promise<never>((_, reject) => {
        for (const slot of slots) {
          slot.worker.once('espra:loading', () => timers.push(setTimeout(() => reject(new EspraError('ESPRA_ERR_BUILD_INIT_TIMEOUT',
            `build ${build.id} refused: init() did not finish within ${opts.initTimeoutMs} ms (--init-timeout); its workers were terminated`, { build: build.id, timeoutMs: opts.initTimeoutMs })), opts.initTimeoutMs)))
        }
      })
      try {
        await Promise.race([ready, timedOut])
      } catch (err) {
        if (staged === mine) staged = null
        for (const slot of slots) {
          slot.gone = true
          void slot.worker.terminate()
        }
        throw err
      } finally {
        for (const timer of timers) clearTimeout(timer)
      }
      if (staged !== mine) throw new EspraError('ESPRA_ERR_BUILD_REPLACED', `build ${build.id} was dropped while its workers started`, { build: build.id })
      mine.ready = true
      if (closing) {
        staged = null
        for (const slot of slots) retire(slot)
      }
    },
    activate(id) {
      if (staged === null || !staged.ready || staged.gen.build.id !== id) return false
      const gen = staged.gen
      staged = null
      const old = current
      current = gen
      if (old !== null) {
        old.retired = true
        for (const slot of old.slots) if (slot.held.length === 0 && slot.task === null) retire(slot)
      }
      pump()
      startTasks()
      return true
    },
    discard(id) {
      if (staged?.gen.build.id === id) dropStaged()
    },
    stats() {
      let busy = 0
      for (const slot of current?.slots ?? []) if (slot.held.length > 0 || slot.task !== null) busy++
      return { build: current?.build.id ?? null, workers: current?.slots.size ?? 0, busy, queued: queue.length + ahead, tasksRunning, tasksQueued: taskQueue.length, requestTimeouts, taskTimeouts, refusedBusy }
    },
    async close() {
      closing = true
      for (const job of queue.splice(0)) fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      // Requests handed ahead and not started get 503 too; running ones finish, and so do tasks (their workers retire after).
      for (const slot of every) {
        for (const job of slot.held.slice(1)) if (takeBack(job)) fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      }
      for (const job of taskQueue.splice(0)) endTask(job, { result: 'released' })
      for (const slot of current?.slots ?? []) if (slot.held.length === 0 && slot.task === null) retire(slot)
      if (staged !== null) dropStaged()
      await Promise.all([...exits])
    },
    destroy() {
      closing = true
      for (const slot of every) void slot.worker.terminate()
    },
  }
}
