/**
 * The requests of one app child on their way to a worker: a bounded queue,
 * the requests handed ahead to busy workers (offered through each worker's
 * claim gate, taken back when an idle worker could run them sooner, when
 * they time out before they started, when their worker ends, and on drain),
 * and `--request-timeout` (504; a worker running the request is terminated,
 * the only way to stop a loop).
 */
import type { ErrorCode } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import { ClaimGate, OfferIds } from './claim-gate.js'
import { DeadlineList } from './deadline-list.js'
import { isFree, type Generation, type Job, type ResponseSink, type Slot } from './pool-state.js'
import type { WireRequest } from './protocol.js'

/**
 * Requests handed to a busy worker ahead of the one it runs: enough that a
 * worker seldom sleeps between requests under load, each sleep costing a
 * wake-up each way (bench/app-dispatch: with the shared-memory rings, 12
 * instead of 4 took the node's CPU per request from 77–110 µs to 64–71 µs,
 * 1 × 1), few enough that little waits behind a slow request (an idle
 * worker takes them back when nothing is queued).
 */
export const AHEAD = 12

export interface RequestQueueOptions {
  readonly queueSize: number
  readonly requestTimeoutMs: number
  readonly log: Logger
}

/** What the queue needs of the rest of the pool. */
export interface QueueHost {
  /** The generation taking requests. */
  current(): Generation | null
  closing(): boolean
  /** Hands request `job` (offered as `job.id` in gate cell `job.cell`) to the worker. */
  send(slot: Slot, job: Job): void
  /** Stops a worker running a timed-out request (and replaces it). */
  terminate(slot: Slot): void
  /** The worker is free of `job` without answering it: it takes what waits. */
  idle(slot: Slot): void
}

export class RequestQueue {
  private readonly waiting: Job[] = []
  /** Requests handed ahead to a busy worker: they count against the queue's bound. */
  private ahead = 0
  private readonly ids = new OfferIds()
  /** Every request not answered yet, oldest first, with one timer for all (not one each). */
  private readonly deadlines: DeadlineList<Job>
  /** Since start: requests answered 504 for --request-timeout, refused 503 busy. */
  timeouts = 0
  refusedBusy = 0

  constructor(private readonly opts: RequestQueueOptions, private readonly host: QueueHost) {
    this.deadlines = new DeadlineList<Job>(opts.requestTimeoutMs, (job) => this.timeOut(job))
  }

  /** Requests waiting: queued, or handed ahead and not started. */
  get length(): number {
    return this.waiting.length + this.ahead
  }

  /** Queues a request for the current generation (refused 503 when every worker is busy and the queue is full). */
  submit(req: WireRequest, sink: ResponseSink): void {
    const current = this.host.current()!
    if (this.length >= this.opts.queueSize && ![...current.slots].some(isFree)) {
      this.refusedBusy++
      return sink.fail('ESPRA_ERR_APP_BUSY', 'every app worker is busy and the request queue is full')
    }
    const job: Job = { id: 0, req, sink, slot: null, cell: 0, done: false, deadline: 0, prev: null, next: null }
    this.deadlines.add(job)
    this.waiting.push(job)
    this.pump()
  }

  /** Hands a request to a worker: to run (an idle worker) or to start once its current one is answered. */
  private offer(slot: Slot, job: Job): void {
    const cell = ClaimGate.freeCell(slot.held)
    if (slot.held.length > 0) this.ahead++
    slot.held.push(job)
    job.slot = slot
    job.cell = cell
    job.id = this.ids.next()
    slot.gate.offer(cell, job.id)
    this.host.send(slot, job)
  }

  /** The worker no longer holds `job` (answered, or taken back): its next one moves up. */
  release(slot: Slot, job: Job): void {
    if (slot.held.length > 1) this.ahead--
    slot.held.splice(slot.held.indexOf(job), 1)
    job.slot = null
  }

  /** Takes back a request its worker has not started; false once it has. */
  private takeBack(job: Job): boolean {
    const slot = job.slot!
    if (!slot.gate.takeBack(job.cell, job.id)) return false
    this.release(slot, job)
    return true
  }

  /** The requests a worker holds but has not started go back to the head of the queue (or, draining, get 503). */
  handBack(slot: Slot): void {
    const back = [...slot.held].filter((job) => !job.done && this.takeBack(job))
    if (this.host.closing()) {
      for (const job of back) this.fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
      return
    }
    if (back.length === 0) return
    this.opts.log.info({ build: slot.gen.build.id, thread: slot.worker.threadId, requests: back.length }, 'requests an ended app worker had not started go to other workers')
    this.waiting.unshift(...back)
    this.pump()
  }

  /** A request is answered (or failed): its deadline goes. */
  finish(job: Job): void {
    job.done = true
    this.deadlines.remove(job)
  }

  fail(job: Job, code: ErrorCode, message: string): void {
    this.finish(job)
    if (!job.sink.aborted) job.sink.fail(code, message)
  }

  /** Drain: queued requests and those handed ahead and not started get 503 (running ones finish). */
  refuseAll(slots: Iterable<Slot>): void {
    for (const job of this.waiting.splice(0)) this.fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
    for (const slot of slots) {
      for (const job of slot.held.slice(1)) if (this.takeBack(job)) this.fail(job, 'ESPRA_ERR_HTTP_DRAINING', 'node is draining')
    }
  }

  /** The oldest queued request still wanted. */
  private nextQueued(): Job | undefined {
    for (let job = this.waiting.shift(); job !== undefined; job = this.waiting.shift()) {
      if (!job.done && !job.sink.aborted) return job
      this.finish(job)
    }
    return undefined
  }

  /** A request offered to a busy worker that has not started it yet, taken back. */
  private takeAhead(current: Generation): Job | undefined {
    for (const slot of current.slots) {
      const job = slot.held.at(-1)
      if (slot.held.length > 1 && this.takeBack(job!)) return job
    }
    return undefined
  }

  /**
   * Moves waiting requests to the current build's workers: one to each idle
   * worker (when nothing is queued, one a busy worker has not started yet),
   * then up to AHEAD more to each worker busy with a request, evenly.
   */
  pump(): void {
    const current = this.host.current()
    if (current === null || this.host.closing()) return
    for (const slot of current.slots) {
      if (!isFree(slot)) continue
      const job = this.nextQueued() ?? this.takeAhead(current)
      if (job === undefined) break
      this.offer(slot, job)
    }
    if (this.waiting.length === 0) return
    // From the shallowest busy worker on: depths no worker is at would each cost a pass over the workers for nothing
    // (under load every worker holds several; this ran for every request and every answer).
    let depth = AHEAD + 1
    for (const slot of current.slots) if (slot.ready && !slot.gone && slot.held.length > 0 && slot.held.length < depth) depth = slot.held.length
    for (; depth <= AHEAD; depth++) {
      for (const slot of current.slots) {
        if (this.waiting.length === 0) return
        if (!slot.ready || slot.gone || slot.held.length !== depth) continue
        const job = this.nextQueued()
        if (job !== undefined) this.offer(slot, job)
      }
    }
  }

  private timeOut(job: Job): void {
    if (job.done) return
    const slot = job.slot
    this.timeouts++
    this.fail(job, 'ESPRA_ERR_APP_TIMEOUT', `no answer within ${this.opts.requestTimeoutMs} ms`)
    if (slot === null) {
      const i = this.waiting.indexOf(job)
      if (i >= 0) this.waiting.splice(i, 1)
    } else if (slot.gone) {
      // Its worker was stopped already (for another request): nothing runs it.
    } else if (this.takeBack(job)) {
      // Its worker had not started it: that worker is fine and takes other work.
      this.host.idle(slot)
    } else {
      this.opts.log.error({ build: slot.gen.build.id, thread: slot.worker.threadId, method: job.req.method, path: job.req.path, timeoutMs: this.opts.requestTimeoutMs },
        'app request timed out: terminating its worker')
      this.host.terminate(slot)
      // The request it was to start next goes to another worker.
      this.handBack(slot)
    }
  }
}
