/**
 * One delivery attempt of one message to one recipient domain: where to
 * (the relay, or the domain's MX hosts in preference order with the implicit
 * MX fallback and null MX honoured) and the SMTP transaction itself
 * (nodemailer's SMTPConnection: opportunistic STARTTLS, the relay's login,
 * the timeouts of `--mail-smtp-timeout`). The outcome sorts each recipient
 * into delivered, temporary (retry later) or permanent (bounce), each with
 * the remote answer or our reason.
 *
 * MTA-STS (mta-sts.ts): without a relay, a domain whose policy is `enforce`
 * is delivered only to MX hosts the policy names, over STARTTLS with a
 * certificate valid for the host; no such host, or no host where TLS
 * works, defers the mail with the reason. Under `testing` MX hosts the
 * policy does not name are logged and used.
 */
import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import type { Logger } from '../../lib/core/log.js'
import type { MtaSts } from './mta-sts.js'

export interface Target {
  /** The name (an MX host's, or the relay's): said in TLS SNI and in answers. */
  readonly host: string
  /** The address to connect to when resolved here (MX hosts, through --mail-dns); else the host is looked up by the system. */
  readonly address?: string
  readonly port: number
  /** TLS from the start (smtps). */
  readonly secure: boolean
  readonly auth: { user: string; pass: string } | null
  /** Check the server's certificate (a relay: yes; an MX host: opportunistic, no; under MTA-STS enforce: yes). */
  readonly verify: boolean
  /** STARTTLS or nothing (MTA-STS enforce). */
  readonly requireTls?: boolean
}

export interface RecipientResult {
  readonly rcpt: string
  readonly answer: string
}

export interface AttemptResult {
  readonly delivered: RecipientResult[]
  readonly temporary: RecipientResult[]
  readonly permanent: RecipientResult[]
  /** The host that answered last, for notices. */
  readonly remote: string | null
}

export interface SmtpOptions {
  readonly relay: string | null
  /** The resolver MX, A and AAAA records are read with (--mail-dns, else the system's servers). */
  readonly resolver: dns.Resolver
  readonly mxPort: number
  readonly timeoutMs: number
  /** The EHLO name. */
  readonly name: string
  /** MTA-STS policies of recipient domains (null: --mail-mta-sts false); only without a relay. */
  readonly mtaSts: MtaSts | null
  /** CAs trusted for verified TLS besides the system's (--mail-tls-ca; undefined: the system's alone). */
  readonly ca: string[] | undefined
  readonly log: Logger
}

/** Where a domain's mail goes; `permanent` when it cannot go anywhere (null MX, no such domain), `temporary` when DNS failed. */
export type Route = { readonly targets: Target[] } | { readonly permanent: string } | { readonly temporary: string }

export function relayTarget(relay: string): Target {
  const url = new URL(relay)
  const secure = url.protocol === 'smtps:'
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (secure ? 465 : 587) : Number(url.port),
    secure,
    auth: url.username === '' ? null : { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) },
    verify: true,
  }
}

const TEMPORARY_DNS = new Set(['ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED', 'EREFUSED', 'ECANCELLED', 'EAI_AGAIN'])

/** The domain's MX hosts (RFC 5321 section 5.1), or why there are none. */
export async function routeOf(domain: string, opts: SmtpOptions): Promise<Route> {
  if (opts.relay !== null) return { targets: [relayTarget(opts.relay)] }
  const mx = (host: string): Target => ({ host, port: opts.mxPort, secure: false, auth: null, verify: false })
  const dns = opts.resolver
  let records: { exchange: string; priority: number }[]
  try {
    records = await dns.resolveMx(domain)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (TEMPORARY_DNS.has(code)) return { temporary: `DNS lookup of ${domain} MX failed (${code})` }
    if (code !== 'ENODATA') return { permanent: `550 5.1.2 ${domain}: no such domain (${code})` }
    records = []
  }
  // RFC 7505: a single MX of "." (Node gives '') says the domain takes no mail.
  if (records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.')) return { permanent: `556 5.1.10 ${domain} publishes a null MX: it accepts no mail` }
  if (records.length === 0) {
    // The implicit MX: the domain's own address records.
    const [a, aaaa] = await Promise.allSettled([dns.resolve4(domain), dns.resolve6(domain)])
    if ((a.status === 'fulfilled' && a.value.length > 0) || (aaaa.status === 'fulfilled' && aaaa.value.length > 0)) return { targets: [mx(domain)] }
    const codes = [a, aaaa].map((r) => (r.status === 'rejected' ? ((r.reason as NodeJS.ErrnoException).code ?? '') : 'ENODATA'))
    if (codes.some((c) => TEMPORARY_DNS.has(c))) return { temporary: `DNS lookup of ${domain} A/AAAA failed (${codes.join(', ')})` }
    return { permanent: `550 5.1.2 ${domain} has no MX and no address records` }
  }
  const sorted = [...records].filter((r) => r.exchange !== '').sort((x, y) => x.priority - y.priority)
  return { targets: sorted.map((r) => mx(r.exchange)) }
}

/** The target with its address read through the same resolver (an MX host's A, else AAAA); unchanged when it is an IP or has no records. */
async function addressOf(target: Target, resolver: dns.Resolver): Promise<Target> {
  if (isIP(target.host) !== 0) return target
  for (const lookup of [() => resolver.resolve4(target.host), () => resolver.resolve6(target.host)]) {
    try {
      const list = await lookup()
      if (list.length > 0) return { ...target, address: list[0]! }
    } catch {
      // try the next kind of record
    }
  }
  return target
}

/** A text for an error: the server's reply when there was one, else what went wrong. */
function answerOf(err: { response?: string; message?: string; code?: string }): string {
  if (typeof err.response === 'string' && err.response !== '') return err.response.replace(/\s+/g, ' ').slice(0, 500)
  return `${err.code ?? 'ERROR'}: ${err.message ?? String(err)}`.slice(0, 500)
}

function isPermanent(err: { responseCode?: number }): boolean {
  return typeof err.responseCode === 'number' && err.responseCode >= 500 && err.responseCode < 600
}

/** One SMTP transaction on one host; rejects with a connection-level error (nothing was decided per recipient). */
function transact(target: Target, opts: SmtpOptions, from: string, rcpts: readonly string[], raw: Buffer): Promise<AttemptResult> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({
      host: target.address ?? target.host, port: target.port, secure: target.secure, name: opts.name,
      connectionTimeout: opts.timeoutMs, greetingTimeout: opts.timeoutMs, socketTimeout: opts.timeoutMs,
      opportunisticTLS: true, requireTLS: target.requireTls === true,
      tls: { rejectUnauthorized: target.verify, servername: target.host, ...(target.verify && opts.ca !== undefined ? { ca: opts.ca } : {}) },
    })
    let settled = false
    const finish = (fn: () => void): void => {
      if (settled) return
      settled = true
      conn.close()
      fn()
    }
    // Every failure arrives here or in a callback; an unhandled 'error' would kill the process.
    conn.on('error', (err: Error) => finish(() => reject(err)))
    conn.on('end', () => finish(() => reject(Object.assign(new Error('connection closed before the transaction ended'), { code: 'ECONNECTION' }))))
    conn.connect((err) => {
      if (err) return finish(() => reject(err))
      const send = (): void => conn.send({ from, to: [...rcpts] }, raw, (err, info) => {
        if (err) {
          const e = err as Error & { responseCode?: number; rejectedErrors?: (Error & { recipient?: string; responseCode?: number; response?: string })[] }
          if (e.rejectedErrors !== undefined && e.rejectedErrors.length > 0) {
            // Every recipient refused at RCPT: each with its own answer.
            const temporary: RecipientResult[] = []
            const permanent: RecipientResult[] = []
            for (const r of e.rejectedErrors) (isPermanent(r) ? permanent : temporary).push({ rcpt: r.recipient ?? '', answer: answerOf(r) })
            return finish(() => resolve({ delivered: [], temporary, permanent, remote: target.host }))
          }
          if (typeof e.responseCode === 'number') {
            // MAIL FROM or DATA refused: the same answer for every recipient.
            const all = rcpts.map((rcpt) => ({ rcpt, answer: answerOf(e) }))
            return finish(() => resolve(isPermanent(e) ? { delivered: [], temporary: [], permanent: all, remote: target.host } : { delivered: [], temporary: all, permanent: [], remote: target.host }))
          }
          return finish(() => reject(err))
        }
        const refused = (info as { rejectedErrors?: (Error & { recipient?: string; responseCode?: number; response?: string })[] }).rejectedErrors ?? []
        const answer = (info.response ?? '').replace(/\s+/g, ' ').slice(0, 500)
        const result: AttemptResult = { delivered: info.accepted.map((rcpt) => ({ rcpt: String(rcpt), answer })), temporary: [], permanent: [], remote: target.host }
        for (const r of refused) (isPermanent(r) ? result.permanent : result.temporary).push({ rcpt: r.recipient ?? '', answer: answerOf(r) })
        conn.quit()
        finish(() => resolve(result))
      })
      if (target.auth !== null) conn.login(target.auth, (err) => (err ? finish(() => reject(err)) : send()))
      else send()
    })
  })
}

/** Tries the route's hosts in order until one answers; connection failures on every host make every recipient temporary. */
export async function attemptDelivery(domain: string, opts: SmtpOptions, from: string, rcpts: readonly string[], raw: Buffer): Promise<AttemptResult> {
  const route = await routeOf(domain, opts)
  if ('permanent' in route) return { delivered: [], temporary: [], permanent: rcpts.map((rcpt) => ({ rcpt, answer: route.permanent })), remote: null }
  if ('temporary' in route) return { delivered: [], temporary: rcpts.map((rcpt) => ({ rcpt, answer: route.temporary })), permanent: [], remote: null }
  let targets = route.targets
  let sts = ''
  if (opts.relay === null && opts.mtaSts !== null) {
    const policy = await opts.mtaSts.policyOf(domain)
    const off = targets.filter((t) => policy.mode !== 'none' && !opts.mtaSts!.matches(t.host, policy)).map((t) => t.host)
    if (policy.mode === 'enforce') {
      targets = targets.filter((t) => !off.includes(t.host)).map((t) => ({ ...t, verify: true, requireTls: true }))
      if (targets.length === 0) {
        const answer = `MTA-STS: ${domain} enforces a policy (id ${policy.id}) naming mx ${policy.mx.join(', ')}; none of its MX hosts (${off.join(', ')}) matches: deferred`
        opts.log.warn({ domain, policy: policy.id, mx: policy.mx, hosts: off }, answer)
        return { delivered: [], temporary: rcpts.map((rcpt) => ({ rcpt, answer })), permanent: [], remote: null }
      }
      if (off.length > 0) opts.log.warn({ domain, policy: policy.id, mx: policy.mx, skipped: off }, `MTA-STS: ${domain} enforces a policy; MX hosts it does not name are skipped (${off.join(', ')})`)
      sts = `MTA-STS: ${domain} enforces TLS with a valid certificate for ${targets.map((t) => t.host).join(', ')}: `
    } else if (policy.mode === 'testing' && off.length > 0) {
      opts.log.warn({ domain, policy: policy.id, mx: policy.mx, hosts: off }, `MTA-STS (testing): MX hosts of ${domain} its policy does not name (${off.join(', ')}); delivered as usual (under enforce they would be skipped)`)
    }
  }
  let last = 'no host to try'
  for (const named of targets) {
    const target = opts.relay === null ? await addressOf(named, opts.resolver) : named
    try {
      return await transact(target, opts, from, rcpts, raw)
    } catch (err) {
      const e = err as { response?: string; message?: string; code?: string; responseCode?: number }
      // Connection-level failures (refused, timeouts, garbage, a greeting that refuses, a login the relay refuses) are
      // temporary: they say nothing about the recipients, and an operator fixing the relay should not find mail bounced.
      last = `${sts}${target.host}:${target.port}: ${answerOf(e)}`
    }
  }
  return { delivered: [], temporary: rcpts.map((rcpt) => ({ rcpt, answer: last })), permanent: [], remote: null }
}
