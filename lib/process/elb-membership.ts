/**
 * The node's place in its ELB target group (`--elb-target-group`): it
 * registers once its own health is ok, and on stop it leaves before it
 * drains: deregister, then keep serving while the load balancer drains the
 * target, until AWS says `unused` or the group's deregistration delay has
 * passed. An AWS failure is one error line; the node keeps serving (on start)
 * or goes on stopping (on stop): ELB trouble never keeps a node up or down.
 *
 * The AWS SDK is loaded only by nodes that name a target group.
 */
import type { NodeConfig } from '../core/config.js'
import type { Logger } from '../core/log.js'
import type { TargetGroupMember, TargetHealth } from '../elb/target-group.js'

const HEALTH_POLL_MS = 250
/** How long `registered` waits for the target group to call the node healthy before it only logs. */
const JOIN_TIMEOUT_MS = 10 * 60_000

export interface ElbMembership {
  /** Leaves the target group (if it joined) and waits out the draining; never rejects. */
  leave(): Promise<void>
}

/** Starts waiting for `healthy()` and then registers; returns at once. */
export async function startElbMembership(config: NodeConfig, log: Logger, healthy: () => boolean): Promise<ElbMembership | null> {
  if (config.elbTargetGroup === null) return null
  const { createTargetGroupMember } = await import('../elb/target-group.js')
  const targetId = config.elbTargetId ?? config.advertise
  const member: TargetGroupMember = createTargetGroupMember({ arn: config.elbTargetGroup, targetId, port: config.port })
  const target = { targetGroup: config.elbTargetGroup, targetId, targetPort: config.port }
  const stop = new AbortController()
  let lastState = ''
  const onState = (h: TargetHealth): void => {
    if (h.state === lastState) return
    lastState = h.state
    log.info({ ...target, elbState: h.state, reason: h.reason }, `ELB target ${h.state}`)
  }
  const fail = (err: unknown, what: string): void => {
    const e = err as { code?: string; message?: string }
    log.error({ ...target, code: e.code }, `${what}: ${e.message ?? String(err)}`)
  }

  let watch: Promise<unknown> = Promise.resolve()
  const joined = (async (): Promise<boolean> => {
    while (!healthy()) {
      if (stop.signal.aborted) return false
      await new Promise((r) => setTimeout(r, HEALTH_POLL_MS))
    }
    if (stop.signal.aborted) return false
    try {
      await member.register()
    } catch (err) {
      fail(err, 'cannot register in the ELB target group')
      return false
    }
    log.info(target, 'registered in the ELB target group')
    // Watching for `healthy` is for the log only; stopping ends the watch.
    watch = member.untilHealthy(JOIN_TIMEOUT_MS, { onState, signal: stop.signal })
      .catch((err: unknown) => fail(err, 'cannot read the ELB target health'))
    return true
  })()

  return {
    async leave() {
      stop.abort()
      if (!(await joined)) return member.close()
      await watch
      log.info(target, 'leaving the ELB target group: deregistering, then serving while the target drains')
      try {
        const result = await member.leave({ onState })
        if (result.timedOut) log.warn({ ...target, elbState: result.state, waitedMs: result.waitedMs }, 'the ELB target was still draining at the deregistration delay; stopping anyway')
        else log.info({ ...target, waitedMs: result.waitedMs }, 'left the ELB target group')
      } catch (err) {
        fail(err, 'cannot leave the ELB target group')
      } finally {
        member.close()
      }
    },
  }
}
