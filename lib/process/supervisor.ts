/**
 * Forks and supervises a node's children. A child that exits unasked is a
 * crash: it is restarted with exponential backoff (from
 * {@link BACKOFF_FIRST_MS}, doubling, capped at {@link BACKOFF_MAX_MS}), for
 * as long as it keeps crashing: a node never gives a slot up. A slot that
 * crashes {@link CRASH_LOOP_COUNT} times within {@link CRASH_LOOP_WINDOW_MS}
 * is crash-looping (health `degraded`, the metrics gauge, one error log)
 * until a child of it has stayed up for {@link STABLE_AFTER_MS}, or a reload
 * replaces it. Replacement always starts the new child first and drains the
 * old one only once the new one listens.
 */
import { fork, type ChildProcess } from 'node:child_process'
import type { NodeConfig } from '../core/config.js'
import { createError, EspraError, fromWire, toWire } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { NodeState } from '../core/node-state.js'
import { createIpcEndpoint, type ChildStats, type IpcEndpoint, type IpcPort, type ToChild, type ToParent } from './ipc.js'
import type { ChildMetrics, MetricsJson } from './metrics.js'

export const CRASH_LOOP_COUNT = 5
export const CRASH_LOOP_WINDOW_MS = 60_000
/** The first restart's delay; each crash that follows without a stable run doubles it. */
export const BACKOFF_FIRST_MS = 100
/** The longest wait between restarts of a slot that keeps crashing. */
export const BACKOFF_MAX_MS = 30_000
/** A child that stays up this long ends its slot's crash streak (and crash loop). */
export const STABLE_AFTER_MS = CRASH_LOOP_WINDOW_MS
/** Past the drain deadline a child gets this long to exit before SIGKILL. */
const EXIT_GRACE_MS = 2000
/** A child is replaced for RSS only after running this long, so a too-low limit cannot spin. */
const RSS_MIN_AGE_MS = 5000

interface Worker {
  readonly index: number
  readonly proc: ChildProcess
  readonly ipc: IpcEndpoint<ToChild>
  readonly startedAt: number
  listening: boolean
  /** Set when we asked it to go: its exit is intended, not a crash. */
  leaving: boolean
  stats: ChildStats | null
  /** Resolves once it listens; rejects if it fails or exits first. */
  readonly ready: Promise<void>
  readonly exited: Promise<void>
}

interface Slot {
  readonly index: number
  current: Worker | null
  /** Crash times within the crash-loop window. */
  crashes: number[]
  /** Crashes since a child of this slot last stayed up for STABLE_AFTER_MS: the backoff's exponent. */
  streak: number
  crashLooping: boolean
  replacing: boolean
  restartTimer: NodeJS.Timeout | null
  /** Runs once the current child has stayed up long enough to end the streak. */
  stableTimer: NodeJS.Timeout | null
}

/** What a reload did: children replaced, and those whose replacement failed to start (the old child kept serving). */
export interface ReloadSummary {
  readonly replaced: number
  readonly failed: readonly { readonly child: number; readonly code: string; readonly message: string }[]
}

export interface SupervisorOptions {
  readonly config: NodeConfig
  /** Node flags children need beyond the parent's own (`Role.childExecArgv`). */
  readonly execArgv?: readonly string[]
  readonly log: Logger
  readonly startedAt: number
  /** The state a new child starts with. */
  state(): NodeState
  /** Children alive or crash-looping changed. */
  onChange(): void
  onCrash(): void
  /** Role traffic from a child (named by its pid). */
  onRole?(child: number, body: unknown): void
  /** Role request from a child; the result is the answer. */
  onRoleRequest?(child: number, body: unknown): unknown
  /** Any child process exited. */
  onExit?(child: number): void
  /** The shared public sockets every child inherits from fd LISTEN_FD on (roles with their own listener). */
  listenFds?: readonly number[]
}

export interface Supervisor {
  /** Forks every child; rejects with the first start-up failure (e.g. `ESPRA_ERR_NODE_LISTEN`). */
  start(): Promise<void>
  /** Replaces every child one at a time (SIGHUP); crash-looping slots get a fresh start (no backoff). */
  reload(reason: string): Promise<ReloadSummary>
  broadcast(msg: ToChild): void
  /** Sends to one child by pid; false when it is gone. */
  sendTo(child: number, msg: ToChild): boolean
  /** Tells every child to drain and waits for all to exit (SIGKILL past the deadline). */
  drainAll(timeoutMs: number): Promise<void>
  /** SIGKILLs every child now. */
  killAll(): void
  alive(): number
  /** Slots crash-looping now: still restarted, with backoff, until one of their children stays up. */
  crashLooping(): number[]
  /** Latest stats of every running child, with its slot and pid. */
  stats(): { slot: number; pid: number; stats: ChildStats }[]
  /** Every listening child's metrics; a child that does not answer in time is left out. */
  metrics(timeoutMs: number): Promise<ChildMetrics[]>
}

export function createSupervisor(opts: SupervisorOptions): Supervisor {
  const { config, log } = opts
  const slots: Slot[] = Array.from({ length: config.children }, (_, index) => ({
    index, current: null, crashes: [], streak: 0, crashLooping: false, replacing: false, restartTimer: null, stableTimer: null,
  }))
  const workers = new Set<Worker>()
  let stopping = false
  let queue: Promise<void> = Promise.resolve()
  let rssLimitTooLowWarned = false

  function spawn(index: number): Worker {
    const proc = fork(process.argv[1]!, [], {
      env: { ...process.env, ESPRA_CHILD: '1' },
      execArgv: [...process.execArgv, ...(opts.execArgv ?? []).filter((flag) => !process.execArgv.includes(flag))],
      serialization: 'advanced',
      ...(opts.listenFds === undefined ? {} : { stdio: ['inherit', 'inherit', 'inherit', 'ipc', ...opts.listenFds] }),
    })
    let onReady!: () => void
    let onNotReady!: (err: Error) => void
    const ready = new Promise<void>((resolve, reject) => ((onReady = resolve), (onNotReady = reject)))
    ready.catch(() => {}) // observed by whoever awaits it; never an unhandled rejection
    const worker: Worker = {
      index, proc, startedAt: Date.now(), listening: false, leaving: false, stats: null, ready,
      exited: new Promise((resolve) => proc.once('exit', () => resolve())),
      ipc: createIpcEndpoint<ToParent, ToChild>(proc as unknown as IpcPort, {
        listening: () => {
          worker.listening = true
          log.info({ child: index, childPid: proc.pid }, `child ${index} listening`)
          onReady()
        },
        failed: (msg) => onNotReady(fromWire(msg.err)),
        stats: (msg) => {
          worker.stats = msg.stats
          checkRss(worker)
        },
        role: (msg) => opts.onRole?.(proc.pid!, msg.body),
        'role-req': (msg) => {
          if (!opts.onRoleRequest) throw createError('ESPRA_ERR_INTERNAL', { reason: 'this role answers no requests from its children' })
          return opts.onRoleRequest(proc.pid!, msg.body)
        },
      }, (msg) => log.warn({ child: index, msg }, 'ignoring an unknown IPC message from a child')),
    }
    workers.add(worker)
    proc.once('exit', (code, signal) => {
      workers.delete(worker)
      worker.ipc.close()
      onNotReady(createError('ESPRA_ERR_INTERNAL', { reason: `child ${index} exited before listening (code ${code}, signal ${signal})`, exited: true }))
      onExit(worker, code, signal)
      opts.onExit?.(proc.pid!)
    })
    proc.on('error', (err) => log.error({ err, child: index }, 'child process error'))
    worker.ipc.send({ t: 'init', index, startedAt: opts.startedAt, config, state: opts.state() })
    log.debug({ child: index, childPid: proc.pid }, `child ${index} forked`)
    return worker
  }

  function onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const slot = slots[worker.index]!
    if (worker.leaving || stopping) {
      log.info({ child: worker.index, childPid: worker.proc.pid, code, signal }, `child ${worker.index} exited`)
      return
    }
    log.warn({ child: worker.index, childPid: worker.proc.pid, code, signal }, `child ${worker.index} crashed`)
    opts.onCrash()
    // A replacement that died before listening is not the slot's child: the old one keeps serving.
    if (slot.current !== worker) return
    slot.current = null
    clearStableTimer(slot)
    const now = Date.now()
    slot.crashes = slot.crashes.filter((at) => at > now - CRASH_LOOP_WINDOW_MS)
    slot.crashes.push(now)
    slot.streak++
    if (slot.crashes.length >= CRASH_LOOP_COUNT && !slot.crashLooping) {
      slot.crashLooping = true
      log.error(
        { child: worker.index, crashes: slot.crashes.length, code: 'ESPRA_ERR_CHILD_CRASHLOOP' },
        `child ${worker.index} is crash-looping (${slot.crashes.length} crashes within ${CRASH_LOOP_WINDOW_MS / 1000}s): restarting it with backoff up to ${BACKOFF_MAX_MS / 1000}s; the node is degraded until a child stays up ${STABLE_AFTER_MS / 1000}s`,
      )
    }
    if (!slot.replacing) scheduleRestart(slot)
    opts.onChange()
  }

  function scheduleRestart(slot: Slot): void {
    if (stopping || slot.restartTimer) return
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(30, Math.max(0, slot.streak - 1)))
    log.info({ child: slot.index, delayMs: delay, crashLooping: slot.crashLooping }, `restarting child ${slot.index} in ${delay}ms`)
    slot.restartTimer = setTimeout(() => restart(slot), delay)
  }

  function restart(slot: Slot): void {
    slot.restartTimer = null
    if (stopping) return
    const worker = spawn(slot.index)
    slot.current = worker
    worker.ready.then(() => {
      watchStable(slot, worker)
      opts.onChange()
    }, () => {})
  }

  /** Once `worker` has stayed up long enough, its slot's crash streak (and crash loop) is over. */
  function watchStable(slot: Slot, worker: Worker): void {
    clearStableTimer(slot)
    if (slot.streak === 0 && !slot.crashLooping) return
    slot.stableTimer = setTimeout(() => {
      slot.stableTimer = null
      if (slot.current !== worker || stopping) return
      slot.streak = 0
      slot.crashes = []
      if (!slot.crashLooping) return
      slot.crashLooping = false
      log.info({ child: slot.index, childPid: worker.proc.pid }, `child ${slot.index} has stayed up ${STABLE_AFTER_MS / 1000}s: no longer crash-looping`)
      opts.onChange()
    }, STABLE_AFTER_MS)
    slot.stableTimer.unref()
  }

  function clearStableTimer(slot: Slot): void {
    if (slot.stableTimer) clearTimeout(slot.stableTimer)
    slot.stableTimer = null
  }

  /** Asks a child to drain and exit; SIGKILL if it outlives the deadline. */
  async function retire(worker: Worker, timeoutMs: number): Promise<void> {
    worker.leaving = true
    worker.ipc.send({ t: 'drain', timeoutMs })
    const kill = setTimeout(() => {
      log.warn({ child: worker.index, childPid: worker.proc.pid }, `child ${worker.index} did not exit after draining: killing it`)
      worker.proc.kill('SIGKILL')
    }, timeoutMs + EXIT_GRACE_MS)
    await worker.exited
    clearTimeout(kill)
  }

  /** New child first; the old one drains only once the new one listens. Resolves with why it failed, or null. */
  async function replace(slot: Slot, reason: string): Promise<ReloadSummary['failed'][number] | null> {
    if (stopping) return { child: slot.index, code: 'ESPRA_ERR_HTTP_DRAINING', message: 'the node is stopping' }
    if (slot.restartTimer) clearTimeout(slot.restartTimer)
    slot.restartTimer = null
    slot.replacing = true
    const old = slot.current
    const next = spawn(slot.index)
    try {
      await next.ready
    } catch (err) {
      log.error({ err, child: slot.index }, `replacement for child ${slot.index} failed to start; keeping the old one`)
      next.leaving = true
      next.proc.kill('SIGKILL')
      slot.replacing = false
      if (!slot.current) scheduleRestart(slot)
      const wire = toWire(err)
      return { child: slot.index, code: wire.code, message: wire.message }
    } finally {
      slot.replacing = false
    }
    slot.current = next
    // An operator's reload (or a replacement that listens) is a fresh start for the slot.
    slot.crashLooping = false
    slot.streak = 0
    slot.crashes = []
    clearStableTimer(slot)
    opts.onChange()
    log.info({ child: slot.index, oldPid: old?.proc.pid, newPid: next.proc.pid, reason }, `child ${slot.index} replaced (${reason})`)
    if (old && old.proc.exitCode === null && old.proc.signalCode === null) await retire(old, config.drainTimeout)
    return null
  }

  function enqueue(job: () => Promise<void>): Promise<void> {
    queue = queue.then(job, job)
    return queue
  }

  function checkRss(worker: Worker): void {
    const limit = config.maxChildRss
    const rss = worker.stats?.rssBytes ?? 0
    if (limit === 0 || rss <= limit || worker.leaving || !worker.listening || stopping) return
    const slot = slots[worker.index]!
    if (slot.current !== worker || slot.replacing) return
    const ageMs = Date.now() - worker.startedAt
    if (ageMs < RSS_MIN_AGE_MS) {
      if (!rssLimitTooLowWarned) {
        rssLimitTooLowWarned = true
        log.warn({ rssBytes: rss, maxChildRss: limit }, 'a fresh child is already over --max-child-rss: children will be replaced again and again; raise the limit')
      }
      return
    }
    slot.replacing = true // until the queued replacement runs, so stats do not queue it twice
    log.warn({ child: worker.index, childPid: worker.proc.pid, rssBytes: rss, maxChildRss: limit, ageMs }, `child ${worker.index} RSS ${rss} bytes is over --max-child-rss ${limit}: replacing it`)
    void enqueue(async () => void (await replace(slot, 'max-child-rss')))
  }

  return {
    async start() {
      for (const slot of slots) slot.current = spawn(slot.index)
      const outcomes = await Promise.allSettled(slots.map((slot) => slot.current!.ready))
      // A child that reports it cannot start (port taken, bad role setup) is a start-up error the
      // operator must see, not something to retry; a child that just died is restarted like any crash.
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected' && !(outcome.reason as EspraError).details?.['exited']) throw outcome.reason
      }
      opts.onChange()
    },
    reload(reason) {
      let summary: ReloadSummary = { replaced: 0, failed: [] }
      return enqueue(async () => {
        log.info({ reason }, 'replacing children one at a time')
        const failed: ReloadSummary['failed'][number][] = []
        for (const slot of slots) {
          const failure = await replace(slot, reason)
          if (failure) failed.push(failure)
        }
        summary = { replaced: slots.length - failed.length, failed }
        if (failed.length === 0) log.info({ reason }, 'all children replaced')
        else log.error({ reason, failed }, `${failed.length} of ${slots.length} children could not be replaced; their old children keep serving`)
      }).then(() => summary)
    },
    broadcast(msg) {
      for (const worker of workers) worker.ipc.send(msg)
    },
    sendTo(child, msg) {
      for (const worker of workers) {
        if (worker.proc.pid !== child) continue
        worker.ipc.send(msg)
        return true
      }
      return false
    },
    async drainAll(timeoutMs) {
      stopping = true
      for (const slot of slots) {
        if (slot.restartTimer) clearTimeout(slot.restartTimer)
        clearStableTimer(slot)
      }
      await Promise.all([...workers].map((worker) => retire(worker, timeoutMs)))
    },
    killAll() {
      stopping = true
      for (const worker of workers) {
        worker.leaving = true
        worker.proc.kill('SIGKILL')
      }
    },
    alive: () => slots.filter((s) => s.current?.listening).length,
    crashLooping: () => slots.filter((s) => s.crashLooping).map((s) => s.index),
    stats: () => [...workers].flatMap((w) => (w.stats ? [{ slot: w.index, pid: w.proc.pid ?? 0, stats: w.stats }] : [])),
    async metrics(timeoutMs) {
      const listening = [...workers].filter((w) => w.listening && !w.leaving)
      const answers = await Promise.allSettled(
        listening.map(async (w): Promise<ChildMetrics> => ({ child: w.index, pid: w.proc.pid ?? 0, metrics: await w.ipc.request<MetricsJson>({ t: 'metrics' }, timeoutMs) })),
      )
      return answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []))
    },
  }
}
