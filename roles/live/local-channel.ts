/**
 * A channel as a Live node's parent relays it to its children: its home, the
 * last sequence relayed, the children subscribed, the members they joined,
 * the home's members as last reported, and the renewal in flight. The node
 * (roles/live/node.ts) keeps one per channel its children use.
 */
import type { LiveMessage } from './channel-history.js'
import type { Member } from './hub.js'
import { PresenceMirror } from './presence-mirror.js'
import type { Renewal } from './renewal.js'

export interface LocalChannel {
  home: string
  /** Last sequence relayed to the children (-1: none yet). Events at or below it are duplicates. */
  lastSeq: number
  readonly children: Set<number>
  /** Subscriptions still waiting for the home's answer: the home's interest must not be dropped under them. */
  pending: number
  /**
   * Messages relayed while subscriptions wait: a home's push can be handled
   * before the continuation of the answer that came just ahead of it (one
   * read, two frames), so the new child was not in `children` yet.
   */
  recent: LiveMessage[]
  readonly users: Map<string, { member: Member; children: Set<number> }>
  /** The channel's members as the home reported them: what this node's children were told. */
  readonly presence: PresenceMirror
  /** The pending settle after a home change. */
  settle: NodeJS.Timeout | null
  /** The renewal at the home in flight, if any: its messages wait for its answer (./renewal.ts). */
  renewal: Renewal | null
}

/** A channel no child has used yet, homed at `home`. */
export function newLocalChannel(home: string): LocalChannel {
  return { home, lastSeq: -1, children: new Set(), pending: 0, recent: [], users: new Map(), presence: new PresenceMirror(), settle: null, renewal: null }
}
