/**
 * The app workers of one child by generation (one build each): spawning a
 * worker, waiting until a new generation's workers all ran `init` (under
 * `--init-timeout`), making it current, retiring the old one (each worker
 * runs `destroy` and exits once it holds nothing), and replacing a worker
 * of a live generation that died or was terminated. What workers do with
 * requests and tasks is not here: the pool (roles/app/pool.ts) is told of
 * each worker's messages, exit and readiness.
 */
import { Worker } from 'node:worker_threads'
import { createError } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import type { BuildOnDisk } from './build-files.js'
import { ClaimGate } from './claim-gate.js'
import { SlotRing } from './slot-ring.js'
import type { Generation, Slot } from './pool-state.js'
import type { AppVisibleConfig, FromWorker, WorkerStart } from './protocol.js'

const WORKER_URL = new URL('./worker.js', import.meta.url)
const DESTROY_GRACE_MS = 5000
const RESPAWN_DELAY_MS = 1000
/**
 * Each worker's two slot rings: more slots than requests a worker holds (13),
 * so a request seldom finds its ring full (it then goes as a message), and
 * slots big enough for a request with a browser's headers and a small body.
 */
const RING_SLOTS = 16
const SLOT_BYTES = 8192

export interface GenerationOptions {
  readonly threads: number
  readonly log: Logger
  readonly child: number
  readonly logLevel: string
  readonly tokenKey: Uint8Array
  readonly appConfig: (build: string) => AppVisibleConfig
  readonly initTimeoutMs: number
  /** Cells of each worker's claim gate: the most requests one worker holds. */
  readonly gateCells: number
  /** A ready worker exited by itself (not retired, not terminated by the pool). */
  readonly onWorkerCrash?: (build: string) => void
}

/** What the pool does with its workers. */
export interface WorkerEvents {
  message(slot: Slot, msg: FromWorker): void
  /** The worker's thread ended (`slot.gone` is set and it left its generation): what it held is the pool's to settle. */
  exit(slot: Slot, code: number): void
  /** A worker's thread was started. */
  started(slot: Slot): void
  /** A replacement worker is ready to take work. */
  replaced(slot: Slot): void
}

export class Generations {
  /** The generation taking requests (null: none yet). */
  current: Generation | null = null
  /** The generation started by `stage`, not taking requests: `ready` once every worker ran init. */
  private staged: { gen: Generation; ready: boolean } | null = null
  /** Set once by close/destroy: nothing is replaced or started from then on. */
  closing = false
  /** Every worker alive, of every generation. */
  readonly every = new Set<Slot>()
  private readonly exits = new Set<Promise<void>>()

  constructor(private readonly opts: GenerationOptions, private readonly events: WorkerEvents) {}

  private spawn(gen: Generation): Slot {
    const { opts } = this
    const gate = new ClaimGate(opts.gateCells)
    const requests = new SlotRing({ slots: RING_SLOTS, slotSize: SLOT_BYTES })
    const responses = new SlotRing({ slots: RING_SLOTS, slotSize: SLOT_BYTES })
    const start: WorkerStart = {
      entry: gen.build.entry, build: gen.build.id, config: opts.appConfig(gen.build.id),
      logLevel: opts.logLevel, child: opts.child, tokenKey: opts.tokenKey, gate: gate.buffer,
      requests: requests.buffer, responses: responses.buffer, slotSize: SLOT_BYTES,
    }
    const worker = new Worker(WORKER_URL, { workerData: start })
    const slot: Slot = { worker, gen, gate, requests, responses, seq: 0, ready: false, held: [], task: null, gone: false }
    gen.slots.add(slot)
    this.every.add(slot)
    let exited!: () => void
    const exit = new Promise<void>((resolve) => (exited = resolve))
    this.exits.add(exit)
    worker.on('message', (msg: FromWorker) => {
      if (msg.t === 'ready') gen.handlesTasks = msg.tasks
      if (msg.t === 'loading' || msg.t === 'ready' || msg.t === 'init-failed' || msg.t === 'destroyed') return void worker.emit('espra:' + msg.t, msg)
      this.events.message(slot, msg)
    })
    worker.on('error', (err) => opts.log.error({ err, build: gen.build.id, thread: worker.threadId }, 'app worker failed'))
    worker.on('exit', (code) => {
      this.exits.delete(exit)
      exited()
      this.onExit(slot, code)
    })
    this.events.started(slot)
    return slot
  }

  private onExit(slot: Slot, code: number): void {
    const wasGone = slot.gone
    slot.gone = true
    slot.gen.slots.delete(slot)
    this.every.delete(slot)
    this.events.exit(slot, code)
    if (!wasGone && slot.ready) this.opts.onWorkerCrash?.(slot.gen.build.id)
    // Keep the current build at full strength: a worker that died (or was killed for a timeout) is replaced.
    if (!wasGone && slot.ready && this.live(slot.gen)) {
      this.opts.log.warn({ build: slot.gen.build.id, thread: slot.worker.threadId, code }, 'app worker exited: starting a replacement')
      this.respawn(slot.gen)
    }
  }

  /** The generation is current or staged, and the pool is not closing: its workers are replaced. */
  private live(gen: Generation): boolean {
    return (gen === this.current || gen === this.staged?.gen) && !this.closing
  }

  private respawn(gen: Generation): void {
    const { log } = this.opts
    const slot = this.spawn(gen)
    slot.worker.once('espra:ready', () => {
      slot.ready = true
      log.info({ build: gen.build.id, thread: slot.worker.threadId }, 'app worker replaced')
      this.events.replaced(slot)
    })
    slot.worker.once('espra:init-failed', (msg: { message: string }) => {
      log.error({ build: gen.build.id, message: msg.message }, 'replacement app worker failed to start; trying again')
      slot.gone = true
      void slot.worker.terminate()
      setTimeout(() => {
        if (this.live(gen)) this.respawn(gen)
      }, RESPAWN_DELAY_MS).unref()
    })
  }

  /** Asks a worker to run destroy and exit (terminated if it takes longer than the grace). */
  retire(slot: Slot, send: (slot: Slot) => void): void {
    if (slot.gone) return
    slot.gone = true
    send(slot)
    const timer = setTimeout(() => void slot.worker.terminate(), DESTROY_GRACE_MS)
    slot.worker.once('exit', () => clearTimeout(timer))
  }

  /** Stops a worker now (the only way to stop a loop) and starts a replacement if its build is current. */
  terminate(slot: Slot): void {
    const replace = slot.gen === this.current && !this.closing && !slot.gone
    slot.gone = true
    slot.gen.slots.delete(slot)
    void slot.worker.terminate()
    if (replace) this.respawn(slot.gen)
  }

  /** Terminates the staged generation's workers (nothing was handed to them). */
  private dropStaged(): void {
    const gen = this.staged!.gen
    this.staged = null
    for (const slot of gen.slots) {
      slot.gone = true
      void slot.worker.terminate()
    }
  }

  /** Starts `build`'s workers beside the current ones; resolves once every one ran init (see WorkerPool.stage). */
  async stage(build: BuildOnDisk, retireAll: (slots: Slot[]) => void): Promise<void> {
    const { opts } = this
    if (this.staged !== null) this.dropStaged()
    const gen: Generation = { build, slots: new Set(), retired: false, handlesTasks: false }
    const mine = { gen, ready: false }
    this.staged = mine
    const slots = Array.from({ length: opts.threads }, () => this.spawn(gen))
    const timers: NodeJS.Timeout[] = []
    const ready = Promise.all(slots.map((slot) => new Promise<void>((resolve, reject) => {
      slot.worker.once('espra:ready', () => {
        slot.ready = true
        resolve()
      })
      slot.worker.once('espra:init-failed', (msg: { message: string }) => reject(createError('ESPRA_ERR_APP_INIT', { build: build.id, reason: msg.message })))
      slot.worker.once('exit', (code) => reject(this.staged !== mine
        ? createError('ESPRA_ERR_BUILD_REPLACED', { build: build.id, during: 'while its workers started' })
        : createError('ESPRA_ERR_APP_INIT', { build: build.id, reason: `a worker exited (code ${code}) while starting` })))
    })))
    // A worker stuck in init (`for(;;){}`) never answers: only terminate() stops it. Each worker's clock starts
    // when its build code starts loading (starting a thread on a busy machine is the platform's time, not the build's).
    const timedOut = new Promise<never>((_, reject) => {
      for (const slot of slots) {
        slot.worker.once('espra:loading', () => timers.push(setTimeout(() => reject(createError('ESPRA_ERR_BUILD_INIT_TIMEOUT',
          { build: build.id, timeoutMs: opts.initTimeoutMs })), opts.initTimeoutMs)))
      }
    })
    try {
      await Promise.race([ready, timedOut])
    } catch (err) {
      if (this.staged === mine) this.staged = null
      for (const slot of slots) {
        slot.gone = true
        void slot.worker.terminate()
      }
      throw err
    } finally {
      for (const timer of timers) clearTimeout(timer)
    }
    if (this.staged !== mine) throw createError('ESPRA_ERR_BUILD_REPLACED', { build: build.id, during: 'while its workers started' })
    mine.ready = true
    if (this.closing) {
      this.staged = null
      retireAll(slots)
    }
  }

  /** Makes the staged build `id` current; returns the generation it replaced (undefined: `id` is not staged and ready). */
  activate(id: string): { old: Generation | null } | undefined {
    const staged = this.staged
    if (staged === null || !staged.ready || staged.gen.build.id !== id) return undefined
    this.staged = null
    const old = this.current
    this.current = staged.gen
    if (old !== null) old.retired = true
    return { old }
  }

  /** Drops the staged (or staging) build `id`. */
  discard(id: string): void {
    if (this.staged?.gen.build.id === id) this.dropStaged()
  }

  /** Stops for good: nothing is replaced, a staged build is dropped; resolves once every worker has exited (the pool retires them). */
  close(): void {
    this.closing = true
    if (this.staged !== null) this.dropStaged()
  }

  async exited(): Promise<void> {
    await Promise.all([...this.exits])
  }

  /** Terminates every worker now. */
  destroy(): void {
    this.closing = true
    for (const slot of this.every) void slot.worker.terminate()
  }
}
