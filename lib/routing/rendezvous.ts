/**
 * Rendezvous (highest-random-weight) hashing: every key goes to the node
 * with the highest score(key, node). Adding a node moves only the keys that
 * node now wins (about 1/n of them); removing one moves only its own keys.
 *
 * The proxy picks a request's Live node with it and the Live role picks a
 * channel's home with it, so both must use this one function. Per-node seeds
 * are computed once when the table is built; a lookup hashes the key once
 * (two independent 32-bit lanes) and mixes it with each node's seeds: no
 * allocation, no crypto, no BigInt on the request path.
 */

/** The murmur3 32-bit finaliser: a cheap, well-avalanching mix. */
function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

// Two lanes with different seeds and multipliers: together a 64-bit-ish key hash.
const LANE_A = 0x9e3779b9
const LANE_B = 0x7f4a7c15

/** Hashes a string into two independent 32-bit lanes (written into `out`). */
export function hashKey(key: string, out: [number, number]): void {
  let a = LANE_A ^ key.length
  let b = LANE_B ^ Math.imul(key.length, 0x27d4eb2f)
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193) // FNV-1a style step, lane A
    b = Math.imul((b << 5) | (b >>> 27), 0x5bd1e995) ^ c // rotate-multiply step, lane B
  }
  out[0] = fmix32(a)
  out[1] = fmix32(b ^ a)
}

/** Something a rendezvous table can pick: only its stable id takes part in the hash. */
export interface RendezvousNode {
  readonly id: string
}

/**
 * A rendezvous table over a fixed node list; build a new one when the list
 * changes. The winner for a key depends only on the key and the set of node
 * ids, never on their order.
 */
export class Rendezvous<T extends RendezvousNode> {
  readonly nodes: readonly T[]
  private readonly seedA: Uint32Array
  private readonly seedB: Uint32Array
  private readonly scratch: [number, number] = [0, 0]

  constructor(nodes: readonly T[]) {
    // Sorted by id so ties (astronomically rare) break the same way everywhere.
    this.nodes = [...nodes].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
    this.seedA = new Uint32Array(this.nodes.length)
    this.seedB = new Uint32Array(this.nodes.length)
    const h: [number, number] = [0, 0]
    this.nodes.forEach((node, i) => {
      hashKey(node.id, h)
      this.seedA[i] = h[0]
      this.seedB[i] = h[1]
    })
  }

  get size(): number {
    return this.nodes.length
  }

  /** The node that owns `key`; undefined when the table is empty. */
  pick(key: string): T | undefined {
    const n = this.nodes.length
    if (n <= 1) return this.nodes[0]
    hashKey(key, this.scratch)
    const ka = this.scratch[0]
    const kb = this.scratch[1]
    let best = 0
    let bestA = -1
    let bestB = -1
    for (let i = 0; i < n; i++) {
      const sa = fmix32(ka ^ this.seedA[i]!)
      if (sa < bestA) continue
      const sb = fmix32((kb ^ this.seedB[i]!) + sa)
      if (sa > bestA || sb > bestB) {
        best = i
        bestA = sa
        bestB = sb
      }
    }
    return this.nodes[best]
  }

  /** Every node ranked for `key`, owner first (e.g. for replicas or fallbacks). */
  rank(key: string): T[] {
    const h: [number, number] = [0, 0]
    hashKey(key, h)
    return this.nodes
      .map((node, i) => {
        const sa = fmix32(h[0] ^ this.seedA[i]!)
        return { node, sa, sb: fmix32((h[1] ^ this.seedB[i]!) + sa) }
      })
      .sort((x, y) => y.sa - x.sa || y.sb - x.sb)
      .map((s) => s.node)
  }
}
