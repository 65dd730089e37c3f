/**
 * Per-address limits of a mail node, kept by its parent for every child:
 * open SMTP connections, and messages started (MAIL FROM) per minute. The
 * kernel spreads one sender's connections among the children, so only a
 * count held in one place makes `--smtp-max-conns-per-address 5` mean 5 for
 * the node. Addresses are counted by `addressKey` (an IPv6 client by its /64).
 * 0 turns a limit off.
 *
 * Bounded: a connection is held only while it is open (a child that exits
 * gives back all of its own at once: sessions are keyed by child), and the
 * message counts are the current minute's only.
 */
import { addressKey } from './address-key.js'

export interface AddressLimits {
  /** False when the address already holds the most connections; true counts this one, until `closed` or `childGone`. */
  connected(child: number, session: string, address: string): boolean
  /** The session closed; one never counted (refused, or unknown) changes nothing. */
  closed(child: number, session: string): void
  /** The child exited: every connection it held is given back. Returns how many. */
  childGone(child: number): number
  /** False when the address started the most messages in this minute; true counts this one. */
  message(address: string): boolean
  /** What the maps hold now: open connections counted, addresses holding them, addresses counted this minute. */
  size(): { connections: number; connectedAddresses: number; messageAddresses: number }
}

export function createAddressLimits(maxConnections: number, maxPerMinute: number): AddressLimits {
  const open = new Map<string, number>()
  // child → session → the key its connection is counted under.
  const sessions = new Map<number, Map<string, string>>()
  let connections = 0
  let minute = 0
  // Counts of the current minute only: a new minute starts from nothing, so the map never outgrows one minute's senders.
  let started = new Map<string, number>()

  function release(key: string): void {
    connections--
    const n = (open.get(key) ?? 1) - 1
    if (n <= 0) open.delete(key)
    else open.set(key, n)
  }

  return {
    connected(child, session, address) {
      const key = addressKey(address)
      const n = open.get(key) ?? 0
      if (maxConnections > 0 && n >= maxConnections) return false
      let held = sessions.get(child)
      if (held === undefined) sessions.set(child, (held = new Map()))
      // The same session asked twice (it cannot, but a retried ask must not count twice).
      if (held.has(session)) return true
      held.set(session, key)
      open.set(key, n + 1)
      connections++
      return true
    },
    closed(child, session) {
      const held = sessions.get(child)
      const key = held?.get(session)
      if (held === undefined || key === undefined) return
      held.delete(session)
      if (held.size === 0) sessions.delete(child)
      release(key)
    },
    childGone(child) {
      const held = sessions.get(child)
      if (held === undefined) return 0
      sessions.delete(child)
      for (const key of held.values()) release(key)
      return held.size
    },
    message(address) {
      if (maxPerMinute <= 0) return true
      const now = Math.floor(Date.now() / 60_000)
      if (now !== minute) {
        minute = now
        started = new Map()
      }
      const key = addressKey(address)
      const n = started.get(key) ?? 0
      if (n >= maxPerMinute) return false
      started.set(key, n + 1)
      return true
    },
    size: () => ({ connections, connectedAddresses: open.size, messageAddresses: minute === Math.floor(Date.now() / 60_000) ? started.size : 0 }),
  }
}
