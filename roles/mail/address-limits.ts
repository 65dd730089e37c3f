/**
 * Per-address limits of one mail child: open SMTP connections, and messages
 * started (MAIL FROM) per minute. Counted per child: a node with N children
 * lets an address have up to N times as much (the kernel spreads its
 * connections among them). 0 turns a limit off.
 */
export interface AddressLimits {
  /** False when `address` already holds the most connections; true counts this one (release it with `closed`). */
  connected(address: string, session: string): boolean
  closed(session: string): void
  /** False when `address` started the most messages in this minute; true counts this one. */
  message(address: string): boolean
}

export function createAddressLimits(maxConnections: number, maxPerMinute: number): AddressLimits {
  const open = new Map<string, number>()
  const sessions = new Map<string, string>()
  let minute = 0
  // Counts of the current minute only: a new minute starts from nothing, so the map never outgrows one minute's senders.
  let started = new Map<string, number>()
  return {
    connected(address, session) {
      const n = open.get(address) ?? 0
      if (maxConnections > 0 && n >= maxConnections) return false
      open.set(address, n + 1)
      sessions.set(session, address)
      return true
    },
    closed(session) {
      const address = sessions.get(session)
      if (address === undefined) return
      sessions.delete(session)
      const n = (open.get(address) ?? 1) - 1
      if (n <= 0) open.delete(address)
      else open.set(address, n)
    },
    message(address) {
      if (maxPerMinute <= 0) return true
      const now = Math.floor(Date.now() / 60_000)
      if (now !== minute) {
        minute = now
        started = new Map()
      }
      const n = started.get(address) ?? 0
      if (n >= maxPerMinute) return false
      started.set(address, n + 1)
      return true
    },
  }
}
