/**
 * MTA-STS (RFC 8461) for outbound delivery straight to MX hosts: does the
 * recipient domain publish a policy, and which MX hosts and what TLS does it
 * ask for. mailauth 4.13.3's helpers do the parts that are pure
 * (`resolvePolicy`: the `_mta-sts` TXT record and its id; `parsePolicy`;
 * `validateMx`: an MX host against the policy's `mx` patterns); the fetch is
 * ours, because mailauth's `fetchPolicy` always connects to port 443 of the
 * first A record with the system's CAs, and tests need another address and
 * their own CA.
 *
 * Cache (RFC 8461 section 5.1): a policy is kept per domain until its
 * `max_age` passes. Each delivery reads the TXT record again (the resolver
 * caches nothing here, a local caching resolver does): the same id, the
 * cached policy; another id, or the cache expired, the policy is fetched
 * again. When the TXT record or the fetch fails, an unexpired cached policy
 * still holds; with none, the domain is treated as having no policy (as the
 * RFC says: MTA-STS never makes mail undeliverable because the policy
 * cannot be read).
 */
import { promises as dns } from 'node:dns'
import { request } from 'node:https'
import { rootCertificates } from 'node:tls'
import { parsePolicy, resolvePolicy, validateMx } from 'mailauth/lib/mta-sts.js'
import type { Logger } from '../../lib/core/log.js'

/** A domain's policy as used: `none` when it publishes none (or it could not be read). */
export interface StsPolicy {
  readonly mode: 'none' | 'testing' | 'enforce'
  /** The TXT record's id (null: no policy). */
  readonly id: string | null
  /** The policy's `mx` patterns (`mx.example.com`, `*.example.net`). */
  readonly mx: readonly string[]
  /** ms since the epoch when the cached policy expires (max_age after it was fetched). */
  readonly expires: number
}

export interface MtaStsOptions {
  /** The resolver the TXT and the policy host's A records are read with (--mail-dns). */
  readonly resolver: dns.Resolver
  /** For tests: fetch every policy from this `host:port` instead of `mta-sts.<domain>:443` (the TLS name and Host header stay `mta-sts.<domain>`). */
  readonly fetchAddress: string | null
  /** Certificates trusted besides the system's (--mail-tls-ca), for the policy fetch and for MX hosts under `enforce`. */
  readonly ca: readonly Buffer[]
  readonly timeoutMs: number
  readonly log: Logger
  readonly now?: () => number
}

export interface MtaSts {
  /** The domain's policy (from the cache when it still holds). */
  policyOf(domain: string): Promise<StsPolicy>
  /** Whether `host` is one of the policy's MX hosts. */
  matches(host: string, policy: StsPolicy): boolean
  /** The CA list for verified TLS: the system's plus --mail-tls-ca (undefined: the system's alone). */
  readonly ca: string[] | undefined
}

const NONE: StsPolicy = { mode: 'none', id: null, mx: [], expires: 0 }
/** A policy file larger than this is refused (RFC 8461 section 3.3 suggests 64 KB). */
const MAX_POLICY_BYTES = 64 * 1024
/** How long a failed fetch for a domain without a cached policy keeps it at `none` before trying again. */
const RETRY_FAILED_MS = 5 * 60_000

export function createMtaSts(opts: MtaStsOptions): MtaSts {
  const now = opts.now ?? Date.now
  const cache = new Map<string, StsPolicy>()
  const ca = opts.ca.length === 0 ? undefined : [...rootCertificates, ...opts.ca.map((c) => c.toString('utf8'))]
  const txt = async (name: string, type: string) => {
    if (type !== 'TXT') throw Object.assign(new Error(`unexpected ${type} lookup`), { code: 'EINVAL' })
    return opts.resolver.resolveTxt(name)
  }

  async function fetchFile(domain: string): Promise<Buffer> {
    const servername = `mta-sts.${domain}`
    let host: string
    let port = 443
    if (opts.fetchAddress !== null) {
      const i = opts.fetchAddress.lastIndexOf(':')
      host = opts.fetchAddress.slice(0, i).replace(/^\[|\]$/g, '')
      port = Number(opts.fetchAddress.slice(i + 1))
    } else {
      const addresses = await opts.resolver.resolve4(servername).catch(() => opts.resolver.resolve6(servername))
      if (addresses.length === 0) throw new Error(`${servername} has no address`)
      host = addresses[0]!
    }
    return new Promise((resolve, reject) => {
      const req = request({
        host, port, servername, path: '/.well-known/mta-sts.txt', method: 'GET', headers: { host: servername },
        rejectUnauthorized: true, ...(ca === undefined ? {} : { ca }), timeout: opts.timeoutMs, agent: false,
      }, (res) => {
        // RFC 8461 section 3.3: a 200 only; redirects are not followed.
        if (res.statusCode !== 200) {
          res.resume()
          return reject(new Error(`https://${servername}/.well-known/mta-sts.txt answered ${res.statusCode}`))
        }
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (d: Buffer) => {
          size += d.length
          if (size > MAX_POLICY_BYTES) {
            req.destroy()
            reject(new Error(`the policy of ${domain} is larger than ${MAX_POLICY_BYTES} bytes`))
          } else chunks.push(d)
        })
        res.on('end', () => resolve(Buffer.concat(chunks)))
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error(`fetching the MTA-STS policy of ${domain} timed out`)))
      req.on('error', reject)
      req.end()
    })
  }

  async function policyOf(domain: string): Promise<StsPolicy> {
    domain = domain.toLowerCase()
    const cached = cache.get(domain)
    const t = now()
    const live = cached !== undefined && cached.expires > t ? cached : null
    let id: string | false
    try {
      id = await resolvePolicy(domain, { resolver: txt as never })
    } catch (err) {
      opts.log.warn({ domain, err: { message: (err as Error).message, code: (err as { code?: string }).code } }, `MTA-STS: the _mta-sts TXT record of ${domain} could not be read: ${live !== null ? `the cached policy (${live.mode}) holds` : 'delivering as without a policy'}`)
      return live ?? NONE
    }
    // No record now: an unexpired cached policy still holds (RFC 8461 section 5.1).
    if (id === false) return live ?? NONE
    if (live !== null && live.id === id) return live
    try {
      const parsed = parsePolicy(await fetchFile(domain)) as { mode: StsPolicy['mode']; mx?: string[]; maxAge: number }
      const policy: StsPolicy = { mode: parsed.mode, id, mx: parsed.mx ?? [], expires: t + parsed.maxAge * 1000 }
      cache.set(domain, policy)
      opts.log.info({ domain, mode: policy.mode, id, mx: policy.mx, maxAge: parsed.maxAge }, `MTA-STS: ${domain} publishes a policy (${policy.mode})`)
      return policy
    } catch (err) {
      opts.log.warn({ domain, id, err: { message: (err as Error).message, code: (err as { code?: string }).code } }, `MTA-STS: the policy of ${domain} could not be fetched (${(err as Error).message}): ${live !== null ? `the cached policy (${live.mode}) holds` : 'delivering as without a policy'}`)
      if (live !== null) return live
      // Not fetched again for every message meanwhile.
      cache.set(domain, { ...NONE, id, expires: t + RETRY_FAILED_MS })
      return NONE
    }
  }

  return {
    policyOf,
    matches: (host, policy) => validateMx(host.replace(/\.$/, ''), { mode: policy.mode, mx: [...policy.mx] } as never).valid === true,
    ca,
  }
}
