/**
 * The embedded task queue the seed hosts (the default backend; other nodes
 * reach it over the meta port: seed/tasks-ops.ts, lib/tasks/queue-meta.ts).
 *
 * Durable state is one LMDB database of task records in
 * `<data-dir>/seed/tasks.mdb`, an environment of its own beside the
 * datastore's: LMDB has one writer per environment, so a busy queue never
 * holds up the datastore's writes (upload tokens, builds), and the
 * datastore's `maxDbs` budget is left alone. A record is written when a task
 * is enqueued, when an attempt fails (retry time or dead letter) and when it
 * is retried; it is deleted when done or when an operator deletes the dead
 * letter. lmdb-js batches the writes of one
 * tick into one transaction, and with `overlappingSync` (its default on
 * Linux) a write's promise resolves when that transaction is committed
 * (visible, and safe from a `kill -9`), before the disk has it: `enqueue`
 * also waits for `flushed` (one flush covers every write before it), so a
 * task it answered survives a power loss too. Settling, failing and retrying
 * wait for the commit only: a power loss may run a settled task again (at
 * least once, as after any crash).
 *
 * What is only in memory: the order of the ready queue, the delayed heap and
 * the leases. At start they are rebuilt from the records (ready in id order;
 * delayed ones whose time has come are ready). A lease does not survive a
 * seed restart: the task is simply ready again (at least once), and the
 * attempt it was on is not counted.
 *
 * The file and its records are in tasks-file.ts, the heap and the FIFO in
 * task-seq-order.ts.
 */
import { join } from 'node:path'
import type { Database, RootDatabase } from 'lmdb'
import { createError } from '../lib/core/errors.js'
import { MAX_ERROR_CHARS, idNumber, type DeadPage, type DeadTask, type LeasedTask, type NewTask } from '../lib/tasks/task.js'
import { DEFAULT_DEAD_LIMIT, type LeaseOptions, type TaskQueue } from '../lib/tasks/queue.js'
import { Fifo, TimeHeap } from './task-seq-order.js'
import { openTasksFile, type TaskRecord } from './tasks-file.js'

/** Ids are handed out from blocks of this size; the block's end is what is persisted. */
const SEQ_BLOCK = 10_000
const SWEEP_MS = 100
const LEASE_EXPIRED = 'lease expired: the node running it stopped, or lost the queue, before it finished'

interface Lease {
  attempt: number
  deadline: number
}

interface Waiter {
  readonly options: LeaseOptions
  readonly resolve: (tasks: LeasedTask[]) => void
  readonly timer: NodeJS.Timeout
  readonly alive: () => boolean
}

/**
 * An enqueue whose task is written at once but handed out only once `gate`
 * resolves true (a caller's write in another environment committed); false
 * or a rejection deletes the task unhanded. Resolves the task's id, or null
 * when the gate said no. Its record and the caller's write commit in
 * parallel, so one waits for one commit instead of two in a row; a crash in
 * between leaves a task whose gate never opened: it runs after the restart,
 * so its handler must tolerate that (the mail handoff skips a message with
 * no record: roles/app/mail-handoff.ts).
 */
export interface GatedEnqueue {
  enqueueWhen(task: NewTask, gate: Promise<boolean>): Promise<string | null>
}

/** Writes that resolve at commit, for a caller that waits for {@link Flushable.flushed} once before it answers (a group commit). */
export interface Flushable<T> {
  /** The same store whose writes resolve once committed (visible), not yet flushed to disk. */
  unflushed(): T
  /** Resolves once every write committed so far is on disk. */
  flushed(): Promise<void>
}

export interface EmbeddedTaskQueue extends TaskQueue, Flushable<Pick<TaskQueue, 'enqueue'> & GatedEnqueue> {
  /** `alive`: whether the caller (a meta peer) is still there when a waiting lease is served. */
  lease(options: LeaseOptions, alive?: () => boolean): Promise<LeasedTask[]>
  /** The environment's file. */
  readonly path: string
}

export interface EmbeddedTaskQueueOptions {
  /** The seed passes `<data-dir>/seed`. */
  readonly dir: string
  /** The environment's file name in `dir` (default `tasks.mdb`; the outbound mail queue is `mail-out.mdb`). */
  readonly file?: string
  /** Tests move time. */
  readonly now?: () => number
}

export async function openEmbeddedTaskQueue(opts: EmbeddedTaskQueueOptions): Promise<EmbeddedTaskQueue> {
  const path = join(opts.dir, opts.file ?? 'tasks.mdb')
  const { root, meta, tasks } = await openTasksFile(opts.dir, path)
  return new LmdbTaskQueue(root, meta, tasks, path, opts.now ?? Date.now)
}

class LmdbTaskQueue implements EmbeddedTaskQueue {
  readonly backend = 'embedded'
  private readonly ready = new Fifo()
  private readonly delayed = new TimeHeap()
  /** Lease deadlines, lazily deleted: an entry counts only if it still matches `leases`. */
  private readonly deadlines = new TimeHeap()
  private readonly leases = new Map<number, Lease>()
  private readonly dead = new Set<number>()
  private readonly waiters: Waiter[] = []
  /** Writes not committed yet (null: a delete); reads see them first, so memory and records never disagree. */
  private readonly pending = new Map<number, TaskRecord | null>()
  private seq: number
  private seqHigh: number
  private closed = false
  private readonly sweeper: NodeJS.Timeout

  constructor(
    private readonly root: RootDatabase,
    private readonly meta: Database<number, string>,
    private readonly tasks: Database<TaskRecord, number>,
    readonly path: string,
    private readonly now: () => number,
  ) {
    let last = 0
    const t = now()
    for (const { key, value } of tasks.getRange({})) {
      last = key
      if (value.s === 'x') this.dead.add(key)
      else if (value.s === 'w' && (value.d ?? 0) > t) this.delayed.push([value.d!, key])
      else this.ready.push(key)
    }
    this.seq = Math.max(last, meta.get('seqHigh') ?? 0)
    this.seqHigh = this.seq
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS)
    this.sweeper.unref()
  }

  async enqueue(task: NewTask): Promise<string> {
    const id = await this.enqueueCommitted(task)
    await this.root.flushed
    return id
  }

  unflushed(): Pick<TaskQueue, 'enqueue'> & GatedEnqueue {
    return { enqueue: (task) => this.enqueueCommitted(task), enqueueWhen: (task, gate) => this.enqueueWhen(task, gate) }
  }

  async flushed(): Promise<void> {
    await this.root.flushed
  }

  /** Enqueues once committed (handed out from then on; a power loss before the flush may take it back). */
  private async enqueueCommitted(task: NewTask): Promise<string> {
    const [seq, record] = this.newRecord(task)
    await this.tasks.put(seq, record)
    return this.handOut(seq, record)
  }

  /** {@link GatedEnqueue.enqueueWhen}: nothing is handed out before both the task's commit and the gate. */
  private async enqueueWhen(task: NewTask, gate: Promise<boolean>): Promise<string | null> {
    const [seq, record] = this.newRecord(task)
    const written = this.tasks.put(seq, record)
    let open = false
    try {
      open = await gate
    } finally {
      await written
      if (!open) await this.tasks.remove(seq)
    }
    return open ? this.handOut(seq, record) : null
  }

  private newRecord(task: NewTask): [number, TaskRecord] {
    this.checkOpen()
    const seq = ++this.seq
    if (seq > this.seqHigh) {
      this.seqHigh = seq + SEQ_BLOCK
      void this.meta.put('seqHigh', this.seqHigh)
    }
    const t = this.now()
    const record: TaskRecord = { n: task.name, p: task.payload, a: 0, m: task.attempts, e: t, s: task.delay > 0 ? 'w' : 'r' }
    if (task.delay > 0) record.d = t + task.delay
    return [seq, record]
  }

  /** In memory only once committed: nothing is handed out that a kill -9 could take back. */
  private handOut(seq: number, record: TaskRecord): string {
    if (record.d !== undefined) this.delayed.push([record.d, seq])
    else this.ready.push(seq)
    this.serveWaiters()
    return `t${seq}`
  }

  lease(options: LeaseOptions, alive: () => boolean = () => true): Promise<LeasedTask[]> {
    this.checkOpen()
    this.sweep()
    const got = this.take(options)
    if (got.length > 0 || !options.waitMs) return Promise.resolve(got)
    return new Promise((resolve) => {
      const waiter: Waiter = {
        options, resolve, alive,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter)
          if (i >= 0) this.waiters.splice(i, 1)
          resolve([])
        }, options.waitMs),
      }
      this.waiters.push(waiter)
    })
  }

  async extend(refs: readonly { id: string; attempt: number }[], leaseMs: number): Promise<string[]> {
    this.checkOpen()
    const lost: string[] = []
    const deadline = this.now() + leaseMs
    for (const { id, attempt } of refs) {
      const seq = idNumber(id)
      const lease = this.leases.get(seq)
      if (lease === undefined || lease.attempt !== attempt) {
        lost.push(id)
        continue
      }
      lease.deadline = deadline
      this.deadlines.push([deadline, seq])
    }
    return lost
  }

  async settle(results: Parameters<TaskQueue['settle']>[0]): Promise<string[]> {
    this.checkOpen()
    const lost: string[] = []
    const writes: Promise<unknown>[] = []
    const t = this.now()
    let readied = false
    for (const r of results) {
      const seq = idNumber(r.id)
      const lease = this.leases.get(seq)
      if (lease === undefined || lease.attempt !== r.attempt) {
        lost.push(r.id)
        continue
      }
      this.leases.delete(seq)
      if (r.result === 'done') {
        writes.push(this.write(seq, null))
      } else if (r.result === 'released') {
        this.ready.unshift(seq)
        readied = true
      } else {
        const record = this.record(seq)
        if (record === undefined) continue
        writes.push(this.failed(seq, record, r.attempt, r.error, t, t + r.retryInMs))
      }
    }
    if (readied) this.serveWaiters()
    await Promise.all(writes)
    return lost
  }

  async counts() {
    this.checkOpen()
    this.sweep()
    return { ready: this.ready.length, delayed: this.delayed.size, leased: this.leases.size, dead: this.dead.size }
  }

  async deadLetters(options: { after?: string; limit?: number } = {}): Promise<DeadPage> {
    this.checkOpen()
    const after = options.after === undefined ? 0 : idNumber(options.after)
    const limit = options.limit ?? DEFAULT_DEAD_LIMIT
    const seqs = [...this.dead].filter((s) => s > after).sort((a, b) => a - b)
    const tasks: DeadTask[] = []
    for (const seq of seqs.slice(0, limit)) {
      const r = this.record(seq)
      if (r === undefined) continue
      tasks.push({ id: `t${seq}`, name: r.n, attempts: r.a, enqueuedAt: r.e, failedAt: r.f ?? 0, error: r.err ?? '', payloadBytes: r.p.length })
    }
    return { tasks, next: seqs.length > limit ? tasks.at(-1)?.id ?? null : null }
  }

  async retry(id: string): Promise<boolean> {
    this.checkOpen()
    const seq = idNumber(id)
    if (!this.dead.has(seq)) return false
    const record = this.record(seq)
    if (record === undefined) return false
    this.dead.delete(seq)
    const { f: _failedAt, d: _due, ...kept } = record
    await this.write(seq, { ...kept, a: 0, s: 'r' })
    this.ready.push(seq)
    this.serveWaiters()
    return true
  }

  async deleteDead(id: string): Promise<boolean> {
    this.checkOpen()
    const seq = idNumber(id)
    if (!this.dead.has(seq)) return false
    this.dead.delete(seq)
    await this.write(seq, null)
    return true
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.sweeper)
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer)
      w.resolve([])
    }
    await this.root.close()
  }

  private record(seq: number): TaskRecord | undefined {
    const p = this.pending.get(seq)
    return p === null ? undefined : p ?? this.tasks.get(seq)
  }

  private write(seq: number, record: TaskRecord | null): Promise<unknown> {
    this.pending.set(seq, record)
    const done = record === null ? this.tasks.remove(seq) : this.tasks.put(seq, record)
    return done.finally(() => {
      if (this.pending.get(seq) === record) this.pending.delete(seq)
    })
  }

  /** A failed or lost attempt: retry at `retryAt`, or a dead letter after the last one. */
  private failed(seq: number, record: TaskRecord, attempt: number, error: string, t: number, retryAt: number): Promise<unknown> {
    const err = error.slice(0, MAX_ERROR_CHARS)
    if (attempt >= record.m) {
      this.dead.add(seq)
      return this.write(seq, { ...record, a: attempt, s: 'x', err, f: t })
    }
    if (retryAt <= t) this.ready.unshift(seq)
    else this.delayed.push([retryAt, seq])
    return this.write(seq, { ...record, a: attempt, s: 'w', d: retryAt, err })
  }

  private take(options: LeaseOptions): LeasedTask[] {
    const out: LeasedTask[] = []
    const deadline = this.now() + options.leaseMs
    let bytes = 0
    while (out.length < options.max) {
      const seq = this.ready.shift()
      if (seq === undefined) break
      const record = this.record(seq)
      // Gone (done through a lease that was lost meanwhile) or dead: nothing to hand out.
      if (record === undefined || record.s === 'x' || this.leases.has(seq)) continue
      if (options.maxBytes !== undefined && out.length > 0 && bytes + record.p.length > options.maxBytes) {
        this.ready.unshift(seq)
        break
      }
      bytes += record.p.length
      const attempt = record.a + 1
      this.leases.set(seq, { attempt, deadline })
      this.deadlines.push([deadline, seq])
      out.push({ id: `t${seq}`, name: record.n, payload: record.p, attempt, attempts: record.m, enqueuedAt: record.e })
    }
    return out
  }

  /** Due delayed tasks become ready; expired leases are lost attempts. */
  private sweep(): void {
    if (this.closed) return
    const t = this.now()
    let readied = false
    for (let top = this.delayed.peek(); top !== undefined && top[0] <= t; top = this.delayed.peek()) {
      this.delayed.pop()
      this.ready.push(top[1])
      readied = true
    }
    for (let top = this.deadlines.peek(); top !== undefined && top[0] <= t; top = this.deadlines.peek()) {
      this.deadlines.pop()
      const [deadline, seq] = top
      const lease = this.leases.get(seq)
      if (lease === undefined || lease.deadline !== deadline) continue
      this.leases.delete(seq)
      const record = this.record(seq)
      if (record === undefined) continue
      void this.failed(seq, record, lease.attempt, LEASE_EXPIRED, t, t)
      readied = true
    }
    if (readied) this.serveWaiters()
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0 && this.ready.length > 0) {
      const w = this.waiters.shift()!
      clearTimeout(w.timer)
      // A caller that went away (its connection closed) gets nothing: no lease to lose.
      w.resolve(w.alive() ? this.take(w.options) : [])
    }
  }

  private checkOpen(): void {
    if (this.closed) throw createError('ESPRA_ERR_TASK_UNAVAILABLE', { reason: 'closed' })
  }
}
