/**
 * The key a client address is counted under by the node-wide SMTP limits
 * (address-limits.ts). One sender must be one key: an IPv4 client of a
 * dual-stack socket (`::ffff:a.b.c.d`, or its hex form `::ffff:7f00:1`) is
 * its IPv4 address, and an IPv6 client is its /64, the block one host or
 * site is usually given, so a sender cannot step past the limits by moving
 * through the 2^64 addresses it holds.
 */
import { isIPv4, isIPv6 } from 'node:net'

/** The eight 16-bit groups of a valid IPv6 address (zone index already removed). */
function ipv6Groups(address: string): number[] {
  const [head, tail] = address.includes('::') ? address.split('::') as [string, string] : [address, null]
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').flatMap((g) => {
    if (!g.includes('.')) return [parseInt(g, 16)]
    const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number]
    return [(a << 8) | b, (c << 8) | d]
  })
  const front = parse(head)
  if (tail === null) return front
  const back = parse(tail)
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back]
}

/** `a.b.c.d` for an IPv4 address or an IPv4-mapped IPv6 one; `x:x:x:x::/64` for other IPv6; anything else as given. */
export function addressKey(address: string): string {
  if (isIPv4(address)) return address
  const bare = address.split('%')[0]!
  if (!isIPv6(bare)) return address
  const g = ipv6Groups(bare)
  if (g.slice(0, 5).every((n) => n === 0) && g[5] === 0xffff) return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`
  return `${g.slice(0, 4).map((n) => n.toString(16)).join(':')}::/64`
}
