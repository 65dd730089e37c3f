/**
 * The records the worker pool's parts share (roles/app/pool.ts): a
 * generation of workers, one worker's slot, a request and a task on their
 * way through the pool.
 */
import type { Worker } from 'node:worker_threads'
import type { ErrorCode } from '../../lib/core/errors.js'
import type { BuildOnDisk } from './build-files.js'
import type { ClaimGate } from './claim-gate.js'
import type { DeadlineEntry } from './deadline-list.js'
import type { SlotRing } from './slot-ring.js'
import type { TaskOutcome, WireRequest, WireTask } from './protocol.js'

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

/** The workers of one build. */
export interface Generation {
  readonly build: BuildOnDisk
  readonly slots: Set<Slot>
  retired: boolean
  /** The build's module exports handleTask (its workers said so when ready). */
  handlesTasks: boolean
}

/** One worker thread and what it holds. */
export interface Slot {
  readonly worker: Worker
  readonly gen: Generation
  /** One cell per request held and not claimed yet. */
  readonly gate: ClaimGate
  /** Requests to the worker (this thread writes) and whole responses from it (this thread reads). */
  readonly requests: SlotRing
  readonly responses: SlotRing
  /** Requests offered to the worker so far: each one's place in its order. */
  seq: number
  ready: boolean
  /** The requests handed to the worker, in order: the first runs (or starts first), the others wait for it. */
  readonly held: Job[]
  task: TaskJob | null
  gone: boolean
}

/** A request from its arrival to its answer; its `--request-timeout` deadline is in the queue's DeadlineList (roles/app/deadline-list.ts). */
export interface Job extends DeadlineEntry {
  /** Its offer to a worker: the id on the wire and in the gate (new at each offer, so a stale one never matches). */
  id: number
  readonly req: WireRequest
  readonly sink: ResponseSink
  /** The worker it was handed to (null: queued). */
  slot: Slot | null
  /** The cell of that worker's gate it was offered in. */
  cell: number
  done: boolean
}

/** A task from `runTask` to its outcome. */
export interface TaskJob {
  readonly task: WireTask
  readonly done: (outcome: TaskOutcome) => void
  timer: NodeJS.Timeout | null
  slot: Slot | null
  finished: boolean
}

/** A worker that can take a request or a task now. */
export const isFree = (slot: Slot): boolean => slot.ready && !slot.gone && slot.held.length === 0 && slot.task === null
