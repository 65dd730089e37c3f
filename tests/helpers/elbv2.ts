/**
 * A local server that speaks the ELBv2 Query API (form-encoded `POST /`, XML
 * answers) for the four actions a node uses: RegisterTargets,
 * DeregisterTargets, DescribeTargetHealth, DescribeTargetGroupAttributes.
 * It keeps real target state per group, so the real SDK pointed at it sees
 * what AWS would show:
 * - a registered target is `initial` for `initialPolls` health reads, then `healthy`;
 * - a deregistered one is `draining` for `drainPolls` health reads, then `unused`
 *   (`Target.NotRegistered`), as AWS reports a target it no longer has.
 * Every call is recorded in order; `throttle(n)` answers the next n calls with
 * `Throttling`; an unknown ARN is `TargetGroupNotFound`; a request without an
 * AWS signature is `MissingAuthenticationToken`.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'

export interface ElbCall {
  readonly action: string
  readonly params: Record<string, string>
}

export interface FakeElbOptions {
  /** Target groups that exist, with their `deregistration_delay.timeout_seconds`. */
  readonly groups: Record<string, { deregistrationDelaySeconds?: number }>
  readonly initialPolls?: number
  readonly drainPolls?: number
}

export interface FakeElb {
  readonly endpoint: string
  readonly calls: ElbCall[]
  /** Actions in the order they came, e.g. `['DescribeTargetGroupAttributes', 'DeregisterTargets', ...]`. */
  actions(): string[]
  /** Answers the next `n` calls with a `Throttling` error. */
  throttle(n: number): void
  /** A target's state as the server holds it. */
  state(arn: string, id: string, port: number): string
  close(): Promise<void>
}

interface Target {
  state: 'initial' | 'healthy' | 'draining' | 'unused'
  polls: number
}

const NS = 'http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/'

function ok(action: string, result: string): string {
  return `<${action}Response xmlns="${NS}"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></${action}Response>`
}

function fault(code: string, message: string): string {
  return `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>`
}

/** `Targets.member.1.Id=a&Targets.member.1.Port=80` → `[{ id: 'a', port: 80 }]`. */
function targetsOf(params: Record<string, string>): { id: string; port: number }[] {
  const out: { id: string; port: number }[] = []
  for (let i = 1; params[`Targets.member.${i}.Id`] !== undefined; i++) {
    out.push({ id: params[`Targets.member.${i}.Id`]!, port: Number(params[`Targets.member.${i}.Port`] ?? 0) })
  }
  return out
}

export async function startFakeElb(opts: FakeElbOptions): Promise<FakeElb> {
  const calls: ElbCall[] = []
  const targets = new Map<string, Target>()
  let throttled = 0
  const key = (arn: string, id: string, port: number) => `${arn}|${id}|${port}`

  function answer(action: string, params: Record<string, string>): { status: number; body: string } {
    const arn = params['TargetGroupArn'] ?? ''
    if (!(arn in opts.groups)) return { status: 400, body: fault('TargetGroupNotFound', `Target groups '${arn}' not found`) }
    switch (action) {
      case 'RegisterTargets':
        for (const t of targetsOf(params)) targets.set(key(arn, t.id, t.port), { state: 'initial', polls: 0 })
        return { status: 200, body: ok(action, '') }
      case 'DeregisterTargets':
        for (const t of targetsOf(params)) {
          const held = targets.get(key(arn, t.id, t.port))
          if (held && held.state !== 'unused') Object.assign(held, { state: 'draining', polls: 0 })
        }
        return { status: 200, body: ok(action, '') }
      case 'DescribeTargetHealth': {
        const members = targetsOf(params).map((t) => {
          const held = targets.get(key(arn, t.id, t.port)) ?? { state: 'unused' as const, polls: 0 }
          held.polls++
          if (held.state === 'initial' && held.polls > (opts.initialPolls ?? 1)) held.state = 'healthy'
          if (held.state === 'draining' && held.polls > (opts.drainPolls ?? 2)) held.state = 'unused'
          const reason = held.state === 'initial' ? 'Elb.InitialHealthChecking' : held.state === 'draining' ? 'Target.DeregistrationInProgress'
            : held.state === 'unused' ? 'Target.NotRegistered' : ''
          return `<member><Target><Id>${t.id}</Id><Port>${t.port}</Port></Target><HealthCheckPort>${t.port}</HealthCheckPort>`
            + `<TargetHealth><State>${held.state}</State>${reason ? `<Reason>${reason}</Reason>` : ''}</TargetHealth></member>`
        })
        return { status: 200, body: ok(action, `<TargetHealthDescriptions>${members.join('')}</TargetHealthDescriptions>`) }
      }
      case 'DescribeTargetGroupAttributes': {
        const delay = opts.groups[arn]!.deregistrationDelaySeconds ?? 300
        return {
          status: 200,
          body: ok(action, `<Attributes><member><Key>deregistration_delay.timeout_seconds</Key><Value>${delay}</Value></member>`
            + '<member><Key>stickiness.enabled</Key><Value>false</Value></member></Attributes>'),
        }
      }
      default:
        return { status: 400, body: fault('InvalidAction', `unknown action ${action}`) }
    }
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')))
      const action = params['Action'] ?? ''
      calls.push({ action, params })
      let reply: { status: number; body: string }
      if (!/^AWS4-HMAC-SHA256 Credential=/.test(req.headers.authorization ?? '')) reply = { status: 403, body: fault('MissingAuthenticationToken', 'Request is missing Authentication Token') }
      else if (throttled > 0) {
        throttled--
        reply = { status: 400, body: fault('Throttling', 'Rate exceeded') }
      } else reply = answer(action, params)
      res.writeHead(reply.status, { 'Content-Type': 'text/xml' }).end(reply.body)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    calls,
    actions: () => calls.map((c) => c.action),
    throttle: (n) => void (throttled = n),
    state: (arn, id, port) => targets.get(key(arn, id, port))?.state ?? 'unused',
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
