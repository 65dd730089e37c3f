/**
 * One sink's queue of notifications (docs/alerts.md, "Sinks"): delivered in
 * order, one at a time; a failure is retried with exponential backoff
 * (1 s doubling to 60 s, {@link MAX_ATTEMPTS} attempts), then dropped. The
 * queue is bounded ({@link MAX_PENDING}: the oldest goes first) and never
 * blocks its caller: `push` returns at once. Its state (pending, sent,
 * dropped, last success, last error) is kept for the dashboard.
 */
import type { AlertNotification } from './alert.js'
import type { SinkStatus } from './store.js'

export const MAX_ATTEMPTS = 8
export const MAX_PENDING = 1000
export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 60_000

export interface SinkQueueOptions {
  readonly name: string
  readonly kind: SinkStatus['kind']
  /** Resolves once the sink took the notification; rejects with why not. */
  readonly deliver: (n: AlertNotification) => Promise<void>
  /** Called after every change of the status. */
  readonly onStatus?: (status: SinkStatus) => void
  readonly backoffMinMs?: number
  readonly backoffMaxMs?: number
  readonly maxAttempts?: number
}

export interface SinkQueue {
  readonly name: string
  push(n: AlertNotification): void
  status(): SinkStatus
  /** Waits for what is queued (at most `timeoutMs`), then stops. */
  close(timeoutMs?: number): Promise<void>
  /** Stops now; what is queued is lost. */
  destroy(): void
}

export function createSinkQueue(opts: SinkQueueOptions): SinkQueue {
  const min = opts.backoffMinMs ?? BACKOFF_MIN_MS
  const max = opts.backoffMaxMs ?? BACKOFF_MAX_MS
  const maxAttempts = opts.maxAttempts ?? MAX_ATTEMPTS
  const queue: AlertNotification[] = []
  const status: SinkStatus = { name: opts.name, kind: opts.kind, pending: 0, sent: 0, dropped: 0, lastSuccessAt: null, lastError: null, updatedAt: Date.now() }
  let running = false
  let stopped = false
  let wake: (() => void) | null = null
  let idle: (() => void) | null = null

  const changed = (): void => {
    status.pending = queue.length
    status.updatedAt = Date.now()
    opts.onStatus?.({ ...status })
  }

  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      wake = null
      resolve()
    }, ms)
    wake = () => {
      clearTimeout(timer)
      wake = null
      resolve()
    }
  })

  async function run(): Promise<void> {
    running = true
    while (!stopped && queue.length > 0) {
      const n = queue[0]!
      let attempts = 0
      for (;;) {
        attempts++
        try {
          await opts.deliver(n)
          status.sent++
          status.lastSuccessAt = Date.now()
          break
        } catch (err) {
          status.lastError = { at: Date.now(), message: String((err as Error)?.message ?? err).slice(0, 500) }
          // A stale notification (its sender no longer holds the engine lease) is dropped, never retried.
          if (attempts >= maxAttempts || stopped || (err as { stale?: unknown })?.stale === true) {
            status.dropped++
            break
          }
          changed()
          await sleep(Math.min(max, min * 2 ** (attempts - 1)))
          if (stopped) break
        }
      }
      // The head may have been pushed out by a full queue while it was retried.
      if (queue[0] === n) queue.shift()
      changed()
    }
    running = false
    idle?.()
  }

  return {
    name: opts.name,
    push(n) {
      if (stopped) return
      queue.push(n)
      // A full queue drops the oldest that is not being delivered now.
      if (queue.length > MAX_PENDING) {
        queue.splice(running ? 1 : 0, 1)
        status.dropped++
      }
      changed()
      if (!running) void run()
    },
    status: () => ({ ...status, pending: queue.length }),
    async close(timeoutMs = 5000) {
      if (running) {
        await Promise.race([
          new Promise<void>((resolve) => (idle = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
        ])
      }
      stopped = true
      wake?.()
    },
    destroy() {
      stopped = true
      wake?.()
    },
  }
}
