/**
 * This node as one target of an ELBv2 target group (ALB or NLB): register it
 * and watch it turn healthy, take it out and wait until the load balancer has
 * stopped sending to it.
 *
 * Leaving follows what AWS documents and what operators have learnt the hard
 * way: `DeregisterTargets`, then poll `DescribeTargetHealth` until the target
 * is `unused` or no longer listed; `draining` and `unhealthy.draining` mean
 * connections are still in flight. The wait is bounded by the group's own
 * `deregistration_delay.timeout_seconds` (read from its attributes) plus a
 * margin, never by a constant of ours.
 *
 * Region and credentials come from the standard AWS chain unless given.
 * Throttling and 5xx answers are retried by the SDK (`maxAttempts`); what is
 * left is one coded error with one clear line:
 * - `ESPRA_ERR_ELB_TARGET_GROUP`: the target group does not exist (wrong ARN or region);
 * - `ESPRA_ERR_ELB_CREDENTIALS`: no credentials in the AWS chain, or they were refused;
 * - `ESPRA_ERR_ELB_UNAVAILABLE`: no answer, throttled or 5xx after every retry;
 * - `ESPRA_ERR_ELB_FAILED`: any other refusal (invalid target, access denied), with AWS's name for it.
 */
import {
  DeregisterTargetsCommand, DescribeTargetGroupAttributesCommand, DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client, RegisterTargetsCommand, type ElasticLoadBalancingV2ClientConfig,
} from '@aws-sdk/client-elastic-load-balancing-v2'
import { createError, EspraError } from '../core/errors.js'

export interface TargetGroupOptions {
  /** The target group's ARN. */
  readonly arn: string
  /** This node as a target: an instance id (`i-…`) for instance targets, an IP address for IP targets. */
  readonly targetId: string
  /** The port the load balancer sends to (the node's public port). */
  readonly port: number
  /** Absent: the AWS chain (`AWS_REGION`, config files, instance metadata). */
  readonly region?: string
  /** An ELBv2-compatible endpoint instead of AWS (tests). */
  readonly endpoint?: string
  /** Absent: the AWS chain (environment, instance role, ...). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string }
  /** Attempts per request, retries of throttling and 5xx included (6). */
  readonly maxAttempts?: number
  /** How long past the deregistration delay `leave` keeps waiting for `unused` (15 s: AWS reports it a few seconds late). */
  readonly leaveMarginMs?: number
}

/** A target's state as `DescribeTargetHealth` reports it, or `gone` when the group no longer lists it. */
export type TargetState = 'initial' | 'healthy' | 'unhealthy' | 'unused' | 'draining' | 'unhealthy.draining' | 'unavailable' | 'gone'

export interface TargetHealth {
  readonly state: TargetState
  /** AWS's reason code, e.g. `Target.DeregistrationInProgress`. */
  readonly reason?: string
}

export interface WaitOptions {
  /** How often to ask (2 s). */
  readonly pollMs?: number
  /** Stops waiting early (the wait then resolves with `timedOut: true`). */
  readonly signal?: AbortSignal
  /** Called with every state seen, for logs. */
  readonly onState?: (health: TargetHealth) => void
}

export interface WaitResult {
  readonly state: TargetState
  readonly waitedMs: number
  /** True when the bound passed (or the signal fired) before the state was reached. */
  readonly timedOut: boolean
}

/** Seconds ELB keeps a deregistered target draining when the group does not say (AWS's default). */
export const DEFAULT_DEREGISTRATION_DELAY_S = 300
const DEFAULT_POLL_MS = 2000

export interface TargetGroupMember {
  readonly arn: string
  register(): Promise<void>
  deregister(): Promise<void>
  health(): Promise<TargetHealth>
  /** The group's `deregistration_delay.timeout_seconds`, in milliseconds. */
  deregistrationDelayMs(): Promise<number>
  /** Deregisters, then waits until the target is `unused` or gone, at most the deregistration delay plus a margin. */
  leave(opts?: WaitOptions): Promise<WaitResult>
  /** Waits until the target is `healthy`, at most `timeoutMs`, without registering it. */
  untilHealthy(timeoutMs: number, opts?: WaitOptions): Promise<WaitResult>
  /** Releases the SDK client's sockets. */
  close(): void
}

/** The SDK's name for an empty credential chain, and AWS's names for credentials it refused. */
const CREDENTIAL_ERRORS = new Set([
  'CredentialsProviderError', 'UnrecognizedClientException', 'InvalidClientTokenId', 'SignatureDoesNotMatch', 'ExpiredToken', 'ExpiredTokenException',
])

interface SdkError {
  name?: string
  Code?: string
  message?: string
  $metadata?: { httpStatusCode?: number }
}

/** One line for what AWS (or the lack of it) said, as a coded error. */
export function elbError(err: unknown, what: string, arn: string): EspraError {
  if (err instanceof EspraError) return err
  const e = (err ?? {}) as SdkError
  const name = e.Code ?? e.name ?? 'Error'
  const status = e.$metadata?.httpStatusCode
  if (name === 'TargetGroupNotFound' || name === 'TargetGroupNotFoundException') {
    return createError('ESPRA_ERR_ELB_TARGET_GROUP', { what, arn })
  }
  if (CREDENTIAL_ERRORS.has(name)) {
    return createError('ESPRA_ERR_ELB_CREDENTIALS', { what, name, reason: e.message ?? 'refused' })
  }
  if (status === undefined || status >= 500 || name === 'Throttling' || name === 'ThrottlingException') {
    return createError('ESPRA_ERR_ELB_UNAVAILABLE', {
      what, name, reason: e.message && e.message !== name ? e.message : 'no message from AWS', ...(status !== undefined ? { status } : {}),
    })
  }
  return createError('ESPRA_ERR_ELB_FAILED', { what, name, status, reason: e.message || 'no message from AWS' })
}

/** Builds the client; no request is made until the first call. */
export function createTargetGroupMember(opts: TargetGroupOptions): TargetGroupMember {
  const config: ElasticLoadBalancingV2ClientConfig = {
    maxAttempts: opts.maxAttempts ?? 6,
    requestHandler: { connectionTimeout: 5000, requestTimeout: 20_000 },
    ...(opts.region !== undefined ? { region: opts.region } : {}),
    ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: { ...opts.credentials } } : {}),
  }
  const client = new ElasticLoadBalancingV2Client(config)
  const targets = [{ Id: opts.targetId, Port: opts.port }]
  const arn = opts.arn

  async function call<T>(what: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send()
    } catch (err) {
      throw elbError(err, what, arn)
    }
  }

  async function health(): Promise<TargetHealth> {
    const out = await call('DescribeTargetHealth', () => client.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn, Targets: targets })))
    const mine = (out.TargetHealthDescriptions ?? []).find((d) => d.Target?.Id === opts.targetId && (d.Target?.Port ?? opts.port) === opts.port)
    if (!mine?.TargetHealth?.State) return { state: 'gone' }
    const reason = mine.TargetHealth.Reason
    return { state: mine.TargetHealth.State as TargetState, ...(reason ? { reason } : {}) }
  }

  async function deregistrationDelayMs(): Promise<number> {
    const out = await call('DescribeTargetGroupAttributes', () => client.send(new DescribeTargetGroupAttributesCommand({ TargetGroupArn: arn })))
    const raw = out.Attributes?.find((a) => a.Key === 'deregistration_delay.timeout_seconds')?.Value
    const seconds = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : DEFAULT_DEREGISTRATION_DELAY_S
    return seconds * 1000
  }

  /** Polls until `done(state)` or the bound; the first answer is asked for at once. */
  async function waitFor(done: (s: TargetState) => boolean, boundMs: number, wait: WaitOptions = {}): Promise<WaitResult> {
    const started = Date.now()
    const pollMs = wait.pollMs ?? DEFAULT_POLL_MS
    for (;;) {
      const seen = await health()
      wait.onState?.(seen)
      const waitedMs = Date.now() - started
      if (done(seen.state)) return { state: seen.state, waitedMs, timedOut: false }
      if (waitedMs + pollMs > boundMs) return { state: seen.state, waitedMs, timedOut: true }
      await sleep(pollMs, wait.signal)
      if (wait.signal?.aborted) return { state: seen.state, waitedMs: Date.now() - started, timedOut: true }
    }
  }

  return {
    arn,
    async register() {
      await call('RegisterTargets', () => client.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: targets })))
    },
    async deregister() {
      await call('DeregisterTargets', () => client.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: targets })))
    },
    health,
    deregistrationDelayMs,
    async leave(wait) {
      // Read the bound first: a group that cannot be described is reported before the target is taken out.
      const bound = (await deregistrationDelayMs()) + (opts.leaveMarginMs ?? 15_000)
      await call('DeregisterTargets', () => client.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: targets })))
      return waitFor((s) => s === 'unused' || s === 'gone', bound, wait)
    },
    untilHealthy: (timeoutMs, wait) => waitFor((s) => s === 'healthy', timeoutMs, wait),
    close() {
      client.destroy()
    },
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
