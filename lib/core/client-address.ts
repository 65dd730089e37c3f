/**
 * The client's address behind load balancers, one rule for every role that
 * needs it (the proxy's `ip` routing key and per-address limits, the address
 * the app hands to its handler). Nothing is trusted by default: a peer's
 * claims about who it forwards for count only when the peer is in
 * `--trusted-proxies`. From such a peer:
 *
 * - a PROXY protocol v2 header (AWS NLB, HAProxy `send-proxy-v2`) at the
 *   start of a connection names the client of that connection;
 * - X-Forwarded-For is walked from the right, past every trusted address:
 *   the first untrusted one is the client (the rightmost-untrusted rule; a
 *   client can prepend anything, but cannot forge what a trusted hop added).
 */
import { BlockList, isIP } from 'node:net'
import { InvalidValue } from './errors.js'

/** The addresses whose PROXY headers and X-Forwarded-For entries are believed. */
export interface TrustedProxies {
  /** Nothing is trusted (the default): callers skip the work. */
  readonly none: boolean
  has(address: string): boolean
}

/**
 * Checks one `--trusted-proxies` item: an IPv4 or IPv6 address, or a CIDR
 * block of either (`10.0.0.0/8`, `fd00::/8`). Returns it; throws an `InvalidValue`
 * saying what is allowed (the config loader names the option).
 */
export function checkCidr(item: string): string {
  const slash = item.indexOf('/')
  const address = slash < 0 ? item : item.slice(0, slash)
  const family = isIP(address)
  if (family === 0) throw new InvalidValue(`each item must be an IP address or a CIDR block such as 10.0.0.0/8 or fd00::/8 (got '${item}')`)
  if (slash >= 0) {
    const bits = item.slice(slash + 1)
    const max = family === 4 ? 32 : 128
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) throw new InvalidValue(`'${item}': the prefix length must be 0 to ${max}`)
  }
  return item
}

export function createTrustedProxies(cidrs: readonly string[]): TrustedProxies {
  const list = new BlockList()
  for (const item of cidrs) {
    const slash = item.indexOf('/')
    const address = slash < 0 ? item : item.slice(0, slash)
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    list.addSubnet(address, slash < 0 ? (type === 'ipv6' ? 128 : 32) : Number(item.slice(slash + 1)), type)
  }
  return {
    none: cidrs.length === 0,
    // An IPv4 block also matches the IPv4-mapped IPv6 form (`::ffff:10.0.0.1`).
    has: (address) => cidrs.length > 0 && list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4'),
  }
}

/** A socket's address as people write it: `::ffff:1.2.3.4` (an IPv4 peer of a dual-stack socket) as `1.2.3.4`. */
export function plainAddress(raw: string): string {
  return raw.startsWith('::ffff:') && raw.indexOf('.') > 0 ? raw.slice(7) : raw
}

/**
 * The client of a request from `peer` that says X-Forwarded-For `xff`:
 * `peer` itself unless it is trusted; else the entries of `xff` from the
 * right, each trusted one passed, up to the first that is not. An entry that
 * is not an IP address ends the walk at the trusted hop before it (a
 * trusted hop wrote no such thing, so it is the last address known true).
 */
export function forwardedClient(peer: string, xff: string | undefined, trusted: TrustedProxies): string {
  let client = peer
  if (xff === undefined || !trusted.has(peer)) return client
  let end = xff.length
  while (end > 0) {
    const comma = xff.lastIndexOf(',', end - 1)
    const entry = xff.slice(comma + 1, end).trim()
    end = comma < 0 ? 0 : comma
    if (entry === '') continue
    if (isIP(entry) === 0) return client
    client = plainAddress(entry)
    if (!trusted.has(client)) return client
  }
  return client
}

/** The 12 bytes a PROXY protocol v2 header starts with (no HTTP request can). */
export const PROXY_V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

export type ProxyV2 =
  /** Not a PROXY v2 header: the bytes are the connection's own. */
  | { readonly kind: 'absent' }
  /** More bytes are needed to tell or to read it whole. */
  | { readonly kind: 'incomplete' }
  /** It claims to be one but is malformed: the connection is refused. */
  | { readonly kind: 'invalid' }
  /** `length` bytes of header; `source` the client's address, or null for a LOCAL command (health checks) or a non-IP family. */
  | { readonly kind: 'header'; readonly length: number; readonly source: string | null }

const ABSENT: ProxyV2 = { kind: 'absent' }
const INCOMPLETE: ProxyV2 = { kind: 'incomplete' }
const INVALID: ProxyV2 = { kind: 'invalid' }

/** Reads a PROXY protocol v2 header at the start of `buf` (the haproxy spec, "2.2. Binary header format"). TLVs are skipped. */
export function parseProxyV2(buf: Buffer): ProxyV2 {
  const sig = Math.min(buf.length, PROXY_V2_SIGNATURE.length)
  if (buf.compare(PROXY_V2_SIGNATURE, 0, sig, 0, sig) !== 0) return ABSENT
  if (buf.length < 16) return INCOMPLETE
  const verCmd = buf[12]!
  const family = buf[13]! >> 4
  const length = 16 + buf.readUInt16BE(14)
  if (verCmd >> 4 !== 2 || (verCmd & 0x0f) > 1) return INVALID
  const need = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0
  if (length - 16 < need) return INVALID
  if (buf.length < length) return INCOMPLETE
  if ((verCmd & 0x0f) === 0 || (family !== 1 && family !== 2)) return { kind: 'header', length, source: null }
  if (family === 1) return { kind: 'header', length, source: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}` }
  const groups: string[] = []
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16))
  return { kind: 'header', length, source: plainAddress(groups.join(':').replace(/^0:0:0:0:0:ffff:/, '::ffff:').replace(/^::ffff:([0-9a-f]+):([0-9a-f]+)$/, (_, hi: string, lo: string) => {
    const h = parseInt(hi, 16)
    const l = parseInt(lo, 16)
    return `::ffff:${h >> 8}.${h & 0xff}.${l >> 8}.${l & 0xff}`
  })) }
}
