/**
 * The node's place in its ELB target group (`--elb-target-group`): it
 * registers once its own health is ok, and on stop (or `admin drain`) it
 * leaves before it drains: deregister, then keep serving while the load
 * balancer drains the target, until AWS says `unused` or the group's
 * deregistration delay has passed. `admin undrain` joins again (register
 * once healthy). An AWS failure is one error line; the node keeps serving
 * (on start) or goes on stopping (on stop): ELB trouble never keeps a node
 * up or down.
 *
 * The node's last known place in the group ({@link ElbMembership.view}) goes
 * into its heartbeats, so the seed shows it and `admin rolling-restart` waits
 * for `healthy` before the next batch.
 *
 * Joins and leaves run one at a time, in the order asked, so a drain and an
 * undrain given in quick succession reach AWS as Deregister then Register.
 *
 * The AWS SDK is loaded only by nodes that name a target group.
 */
import type { NodeConfig } from '../core/config.js'
import type { Logger } from '../core/log.js'
import type { ElbView } from '../transport/meta-shapes.js'
import type { TargetGroupMember, TargetHealth } from '../elb/target-group.js'

const HEALTH_POLL_MS = 250
/** How long `registered` waits for the target group to call the node healthy before it only logs. */
const JOIN_TIMEOUT_MS = 10 * 60_000

export interface ElbMembership {
  /** Leaves the target group (if it is in it) and waits out the draining; never rejects. */
  leave(): Promise<void>
  /** Registers again once `healthy()` (after a `leave`); returns once registered, or at once when already in; never rejects. */
  join(): Promise<void>
  /** Ends any wait and releases the SDK client; call once the node no longer joins or leaves. */
  close(): void
  /** The target's state as this node last saw it (meta-shapes `ElbView`). */
  view(): ElbView
}

/**
 * Starts waiting for `healthy()` and then registers; returns at once.
 * `onView` hears every change of {@link ElbMembership.view}.
 */
export async function startElbMembership(config: NodeConfig, log: Logger, healthy: () => boolean, onView: () => void = () => {}): Promise<ElbMembership | null> {
  if (config.elbTargetGroup === null) return null
  const { createTargetGroupMember } = await import('../elb/target-group.js')
  const targetId = config.elbTargetId ?? config.advertise
  const member: TargetGroupMember = createTargetGroupMember({ arn: config.elbTargetGroup, targetId, port: config.port })
  const target = { targetGroup: config.elbTargetGroup, targetId, targetPort: config.port }
  let lastState = ''
  // joining (waiting for health, registering), then what AWS says, leaving, left; not-registered when a register failed.
  let viewState = 'joining'
  const setView = (state: string): void => {
    if (state === viewState) return
    viewState = state
    onView()
  }
  const onState = (h: TargetHealth): void => {
    setView(h.state)
    if (h.state === lastState) return
    lastState = h.state
    log.info({ ...target, elbState: h.state, reason: h.reason }, `ELB target ${h.state}`)
  }
  const fail = (err: unknown, what: string): void => {
    const e = err as { code?: string; message?: string }
    log.error({ ...target, code: e.code }, `${what}: ${e.message ?? String(err)}`)
  }

  // `in`: registered (or registering); a `leave` aborts the wait for health and the watch for `healthy`.
  let joinedNow = false
  let stop = new AbortController()
  let watch: Promise<unknown> = Promise.resolve()
  let closed = false
  let chain: Promise<unknown> = Promise.resolve()
  const serial = (work: () => Promise<void>): Promise<void> => {
    const run = chain.then(work)
    chain = run
    return run
  }

  async function register(signal: AbortSignal): Promise<void> {
    while (!healthy()) {
      if (signal.aborted) return
      await new Promise((r) => setTimeout(r, HEALTH_POLL_MS))
    }
    if (signal.aborted) return
    try {
      await member.register()
    } catch (err) {
      setView('not-registered')
      return fail(err, 'cannot register in the ELB target group')
    }
    joinedNow = true
    lastState = ''
    log.info(target, 'registered in the ELB target group')
    // Watching for `healthy` is for the log only; leaving ends the watch.
    watch = member.untilHealthy(JOIN_TIMEOUT_MS, { onState, signal })
      .catch((err: unknown) => fail(err, 'cannot read the ELB target health'))
  }

  // The first join waits for health outside the chain, so a stop during start-up aborts it at once.
  const first = register(stop.signal)

  return {
    leave() {
      stop.abort()
      return serial(async () => {
        await first
        if (!joinedNow) return
        await watch
        log.info(target, 'leaving the ELB target group: deregistering, then serving while the target drains')
        setView('leaving')
        try {
          const result = await member.leave({ onState })
          if (result.timedOut) log.warn({ ...target, elbState: result.state, waitedMs: result.waitedMs }, 'the ELB target was still draining at the deregistration delay; going on')
          else log.info({ ...target, waitedMs: result.waitedMs }, 'left the ELB target group')
        } catch (err) {
          fail(err, 'cannot leave the ELB target group')
        }
        // Out as far as this node can tell (a failed deregister is retried by the next join/leave, not in a loop).
        joinedNow = false
        setView('left')
      })
    },
    join() {
      return serial(async () => {
        await first
        if (joinedNow || closed) return
        stop = new AbortController()
        setView('joining')
        await register(stop.signal)
      })
    },
    view: () => ({ state: viewState, targetGroup: config.elbTargetGroup! }),
    close() {
      closed = true
      stop.abort()
      void chain.finally(() => member.close())
    },
  }
}
