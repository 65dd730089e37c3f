/**
 * SPF, DKIM, DMARC and ARC of an inbound message with mailauth's
 * `authenticate()`, reading the message as a stream (the DKIM body hashes
 * are computed on the way; only the header section is kept, and that is
 * bounded by `--mail-max-header-size`): on the mail node while the message
 * arrives (`--mail-dmarc-reject`), else on the app node from the stored raw
 * message before `handleMail` (verify-stored.ts). The results are summed up
 * small ({@link MailAuthResults}) for the record, the task and `handleMail`.
 *
 * Time-bounded: the caller waits at most `timeoutMs` after the data ended;
 * past that every result is `temperror` (never a reason to refuse). Lookups
 * go through `resolver` (tests pass their own records) or node's DNS.
 */
import { promises as dns } from 'node:dns'
import type { Readable } from 'node:stream'
import { authenticate, type AuthenticateResult, type DNSResolver } from 'mailauth'
import { MAX_DKIM_SIGNATURES, type AuthResult, type MailAuthResults } from './inbound-auth.js'

export interface VerifyInput {
  /** The client's IP address. */
  readonly ip: string
  /** Its HELO/EHLO name. */
  readonly helo: string
  /** MAIL FROM ('' for the null sender). */
  readonly sender: string
}

export interface MailVerifier {
  /** Starts verifying `message` (a stream of its raw bytes); never rejects: a failure is `temperror`. */
  start(message: Readable, input: VerifyInput): PendingVerification
}

export interface PendingVerification {
  /** The results, waiting at most the verifier's timeout from now (call once the data ended). */
  results(): Promise<MailAuthResults>
  /** The message will not be taken (the client left, the store failed): stop reading it, and say nothing of it. */
  abandon(): void
}

const RESULT_WORDS = new Set<AuthResult>(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy', 'skipped'])

function word(raw: unknown): AuthResult {
  if (raw === 'temperr') return 'temperror'
  return RESULT_WORDS.has(raw as AuthResult) ? (raw as AuthResult) : 'neutral'
}

/** Every check `temperror`: what a verification that failed or ran out of time gives. */
export function unverified(why: string): MailAuthResults {
  return {
    spf: { result: 'temperror', domain: null },
    dkim: { result: 'temperror', signatures: [] },
    dmarc: { result: 'temperror', domain: null, policy: null },
    arc: { result: 'temperror' },
    header: `spf=temperror; dkim=temperror; dmarc=temperror; arc=temperror (${why})`.slice(0, 4096),
  }
}

/** mailauth's answer, summed up and bounded. */
export function summarize(r: AuthenticateResult): MailAuthResults {
  const signed = (r.dkim.results ?? []).filter((s) => typeof s.signingDomain === 'string' && s.signingDomain !== '')
  const dkim = signed.length === 0 ? 'none' : signed.some((s) => s.status.result === 'pass') ? 'pass' : word(signed[0]!.status.result)
  const header = r.headers.split(/\r?\n(?=\S)/).find((h) => /^Authentication-Results:/i.test(h)) ?? ''
  return {
    spf: r.spf === false ? { result: 'none', domain: null } : { result: word(r.spf.status.result), domain: r.spf.domain ?? null },
    dkim: {
      result: dkim,
      signatures: signed.slice(0, MAX_DKIM_SIGNATURES).map((s) => ({
        result: word(s.status.result), domain: s.signingDomain.slice(0, 253), selector: s.selector?.slice(0, 253) ?? null, aligned: Boolean(s.status.aligned),
      })),
    },
    dmarc: r.dmarc === false
      ? { result: 'none', domain: null, policy: null }
      : { result: word(r.dmarc.status.result), domain: r.dmarc.domain ?? null, policy: typeof r.dmarc.policy === 'string' && r.dmarc.policy !== '' ? r.dmarc.policy : null },
    arc: { result: r.arc === false ? 'none' : word(r.arc.status.result) },
    header: header.replace(/^Authentication-Results:\s*/i, '').replace(/\r?\n[ \t]+/g, ' ').slice(0, 4096),
  }
}

/** How long a resolver made with a cache keeps an answer: a burst of mail from one sender asks the same few names. */
export const DNS_CACHE_MS = 2000
const DNS_CACHE_MAX = 1000
/** Answers that are answers (no such name, no such record), kept like records; any other failure (a timeout, SERVFAIL) is asked again. */
const CACHED_FAILURES = new Set(['ENOTFOUND', 'ENODATA'])

type Answer = string[][] | string[]

/**
 * A resolver on the given DNS servers (`ip` or `ip:port`), or the system's when there are none; each lookup bounded.
 * `cacheMs` > 0: each answer (and "no such name/record") is kept that long, at most 1,000 names, the oldest dropped
 * first; the same question meanwhile is not sent again (a lookup in flight is shared). Each caller gets its own copy.
 */
export function dnsResolver(servers: readonly string[], timeoutMs: number, cacheMs = 0): DNSResolver {
  const resolver = new dns.Resolver({ timeout: Math.max(100, Math.min(timeoutMs, 5000)), tries: 2 })
  if (servers.length > 0) resolver.setServers([...servers])
  const lookup = (name: string, rrtype: string) => (resolver.resolve as (n: string, t: string) => Promise<Answer>)(name, rrtype)
  if (cacheMs <= 0) return lookup
  const kept = new Map<string, { until: number; answer: Promise<Answer> }>()
  const copy = (a: Answer): Answer => (a as unknown[]).map((x) => (Array.isArray(x) ? [...x] : x)) as Answer
  return (name, rrtype) => {
    const key = `${rrtype} ${name.toLowerCase()}`
    const now = performance.now()
    let entry = kept.get(key)
    if (entry === undefined || entry.until <= now) {
      kept.delete(key)
      if (kept.size >= DNS_CACHE_MAX) kept.delete(kept.keys().next().value!)
      const answer = lookup(name, rrtype)
      const fresh = { until: now + cacheMs, answer }
      kept.set(key, fresh)
      answer.catch((err: unknown) => {
        if (!CACHED_FAILURES.has((err as { code?: string })?.code ?? '') && kept.get(key) === fresh) kept.delete(key)
      })
      entry = fresh
    }
    return entry.answer.then(copy)
  }
}

export function createMailVerifier(opts: { resolver: DNSResolver; timeoutMs: number; mta: string; onError?: (err: unknown) => void }): MailVerifier {
  return {
    start(message, input) {
      let abandoned = false
      const settled: Promise<MailAuthResults> = authenticate(message, {
        ip: input.ip, helo: input.helo, sender: input.sender, mta: opts.mta, resolver: opts.resolver,
        // BIMI is a logo lookup for mail clients, not an authentication result; ARC sealing needs a key we do not have.
        disableBimi: true,
      }).then(summarize, (err: unknown) => {
        if (!abandoned) opts.onError?.(err)
        return unverified(`verification failed: ${(err as Error)?.message ?? String(err)}`)
      })
      return {
        results() {
          let timer: NodeJS.Timeout | undefined
          const late = new Promise<MailAuthResults>((resolve) => {
            timer = setTimeout(() => resolve(unverified(`not finished within ${opts.timeoutMs} ms`)), opts.timeoutMs)
          })
          return Promise.race([settled, late]).finally(() => clearTimeout(timer))
        },
        abandon() {
          abandoned = true
          message.destroy(Object.assign(new Error('the message was abandoned'), { code: 'ESPRA_ERR_MAIL_ABANDONED' }))
        },
      }
    },
  }
}
