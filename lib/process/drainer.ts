/**
 * Carries out the seed's drain orders in a node parent (`admin drain`,
 * docs/operations.md "Drain"). The order of steps is the point:
 *
 * 1. health answers 503 `draining` at once (the seed has already taken the
 *    node out of routing when it sent the order);
 * 2. with `--elb-target-group`, leave the target group: deregister, and serve
 *    while the load balancer drains the target (bounded by its delay);
 * 3. keep serving through the order's grace: an ALB goes on sending to a
 *    deregistered target for a few seconds, a proxy may still hold a table
 *    that names this node;
 * 4. then `stop`: the normal stop sequence (in-flight work drains, exit 0);
 *    or `idle`: the children stay up, serving what still reaches them, and
 *    the node stays registered as draining until `admin undrain`.
 *
 * An undrain at any point cancels what is left, clears `draining` and joins
 * the target group again. The seed sends the order again on every
 * (re)registration, so the same order is recognised (by its `at`) and not
 * started twice. A `stop` order older than this process is not carried out
 * again: the operator (or a process manager) started the node after it, so
 * it comes back drained and idle rather than stopping in a loop. A
 * `restart` order (admin rolling-restart --mode restart) stops the same way
 * but asks for the restart exit status; it is carried out only by the
 * process it names (`restartOf`): the seed lifts it when a new one registers.
 */
import type { Logger } from '../core/log.js'
import type { DrainOrder } from '../transport/drain-order.js'
import type { ElbMembership } from './elb-membership.js'

/** What the drainer needs from the node parent. */
export interface DrainerOptions {
  readonly log: Logger
  /** This process's start, ms since the epoch. */
  readonly startedAt: number
  setDraining(draining: boolean): void
  elb(): ElbMembership | null
  /** Runs the node's stop sequence (exit 0 once drained; with `restart`, the restart exit status). */
  stop(restart: boolean): void
}

/** The node's current drain order and the way to change it. */
export interface Drainer {
  /** The order the seed pushed; null lifts it. */
  apply(order: DrainOrder | null): void
  readonly order: DrainOrder | null
  /** The node is stopping: ends a grace wait, and later orders (an undrain too) are ignored. */
  close(): void
}

/** The drain state machine of one node parent; idle until the seed pushes an order. */
export function createDrainer(opts: DrainerOptions): Drainer {
  const { log } = opts
  let current: DrainOrder | null = null
  // Bumped by every new order or undrain: a step that finds it changed stops there.
  let generation = 0
  let graceTimer: NodeJS.Timeout | null = null
  let wakeGrace: (() => void) | null = null
  // Set once the node is stopping: an undrain then must not make health ok again.
  let closed = false

  function cancelGrace(): void {
    if (graceTimer) clearTimeout(graceTimer)
    graceTimer = null
    wakeGrace?.()
    wakeGrace = null
  }

  async function run(order: DrainOrder, mine: number): Promise<void> {
    opts.setDraining(true)
    log.info({ then: order.then, graceMs: order.graceMs, at: order.at }, 'drain ordered: health answers 503, out of routing')
    const elb = opts.elb()
    if (elb) await elb.leave()
    if (mine !== generation) return
    if (order.graceMs > 0) {
      log.info({ graceMs: order.graceMs }, 'drain: serving through the grace')
      await new Promise<void>((resolve) => {
        wakeGrace = resolve
        graceTimer = setTimeout(resolve, order.graceMs)
        graceTimer.unref()
      })
      graceTimer = null
      wakeGrace = null
      if (mine !== generation) return
    }
    if (order.then === 'stop' && order.at >= opts.startedAt) {
      log.info('drain: grace over, stopping')
      return opts.stop(false)
    }
    if (order.then === 'restart' && order.restartOf === opts.startedAt) {
      log.info('drain: grace over, stopping to be restarted by the process manager')
      return opts.stop(true)
    }
    log.info(order.then === 'idle' ? 'drain: grace over, idle until admin undrain'
      : `drain: this process started after the ${order.then} order; it stays drained and idle (admin undrain brings it back)`)
  }

  return {
    get order() {
      return current
    },
    apply(order) {
      if (closed) return
      if (order === null) {
        if (current === null) return
        current = null
        generation++
        cancelGrace()
        opts.setDraining(false)
        log.info('undrained: health ok again, back in routing')
        void opts.elb()?.join()
        return
      }
      if (current !== null && current.at === order.at && current.then === order.then && current.graceMs === order.graceMs) return
      current = order
      const mine = ++generation
      cancelGrace()
      run(order, mine).catch((err: unknown) => log.error({ err }, 'drain failed'))
    },
    close() {
      closed = true
      generation++
      cancelGrace()
    },
  }
}
