/**
 * The waiting leases of the task queue in PostgreSQL (lib/tasks/queue-postgres.ts):
 * a `lease` with `waitMs` that found nothing waits here. One pump serves them,
 * oldest waiter first, while tasks come; then it sleeps until woken (a write
 * that made a task ready, here or, by NOTIFY, on another seed) or until the
 * poll interval or the first waiter's deadline, whichever comes first.
 */
import type { LeaseOptions } from './queue.js'
import type { LeasedTask, LeaseRef } from './task.js'

interface Waiter {
  readonly options: LeaseOptions
  readonly alive: () => boolean
  readonly until: number
  readonly resolve: (tasks: LeasedTask[]) => void
  readonly reject: (err: unknown) => void
  readonly opId: string | undefined
}

export interface LeaseWaitersOptions {
  /** One lease attempt (lib/tasks/queue-postgres-statements.ts `leaseReady`). */
  readonly take: (options: LeaseOptions, opId: string | undefined) => Promise<LeasedTask[]>
  /** Gives tasks back when their waiter's caller went away. */
  readonly release: (refs: readonly LeaseRef[]) => Promise<void>
  /** How often a waiting lease looks again unwoken. */
  readonly pollMs: number
}

export interface LeaseWaiters {
  /** Waits up to `options.waitMs` for tasks; answers none at the deadline, when `alive` turns false, or at close. */
  wait(options: LeaseOptions, alive: () => boolean, opId: string | undefined): Promise<LeasedTask[]>
  /** A task may be ready: waiting leases look now. */
  wake(): void
  /** Every waiting lease answers none; the pump stops. */
  close(): void
}

export function createLeaseWaiters({ take, release, pollMs }: LeaseWaitersOptions): LeaseWaiters {
  let closed = false
  const waiters: Waiter[] = []
  let pumping = false
  let woken = false
  let pollTimer: NodeJS.Timeout | null = null

  /** Serves waiting leases, oldest waiter first, while tasks come; then sleeps until woken or `pollMs`. */
  function wake(): void {
    woken = true
    if (waiters.length > 0 && !pumping) void pump()
  }
  async function pump(): Promise<void> {
    pumping = true
    if (pollTimer !== null) clearTimeout(pollTimer)
    pollTimer = null
    try {
      while (waiters.length > 0 && !closed) {
        woken = false
        const now = Date.now()
        for (let i = waiters.length - 1; i >= 0; i--) {
          const w = waiters[i]!
          if (w.until <= now || !w.alive()) {
            waiters.splice(i, 1)
            w.resolve([])
          }
        }
        const w = waiters[0]
        if (w === undefined) break
        let got: LeasedTask[]
        try {
          got = await take(w.options, w.opId)
        } catch (err) {
          waiters.shift()
          w.reject(err)
          continue
        }
        if (got.length > 0) {
          waiters.shift()
          // A caller that went away meanwhile would lose these: give them back, unless its op id keeps them for its resend.
          if (w.alive() || w.opId !== undefined) w.resolve(got)
          else {
            await release(got).catch(() => {})
            w.resolve([])
          }
          continue
        }
        if (woken) continue
        break
      }
    } finally {
      pumping = false
    }
    if (waiters.length > 0 && !closed) {
      const next = Math.min(pollMs, ...waiters.map((w) => w.until - Date.now()))
      pollTimer = setTimeout(() => void pump(), Math.max(1, next))
    }
  }

  return {
    wake,
    wait(options, alive, opId) {
      return new Promise<LeasedTask[]>((resolve, reject) => {
        waiters.push({ options, alive, until: Date.now() + options.waitMs!, resolve, reject, opId })
        wake()
      })
    },
    close() {
      closed = true
      if (pollTimer !== null) clearTimeout(pollTimer)
      for (const w of waiters.splice(0)) w.resolve([])
    },
  }
}
