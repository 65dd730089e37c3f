/**
 * A Live node's copy of one channel's members as its home reported them (a
 * snapshot, then the home's join and leave events): what the node's children
 * were told. After the channel's home changes, a fresh snapshot from the new
 * home is compared with it, and the difference is what the children are told:
 * the members of a home that died leave. Count-only channels keep no mirror.
 */
import type { Member } from './hub.js'

export interface PresenceChange {
  readonly joins: Member[]
  readonly leaves: string[]
}

export class PresenceMirror {
  /** Null until the first snapshot, and while the channel is too big to mirror. */
  private members: Map<string, Member> | null = null
  /** Events that arrived while a snapshot was asked for: applied on top of it (each is idempotent). */
  private loading: PresenceChange[] | null = null
  /** The last snapshot had more members than a presence answer lists: not mirrored (no snapshot per new subscriber). */
  private tooBig = false

  /** Whether a first snapshot is worth asking for. */
  get wanted(): boolean {
    return this.members === null && !this.tooBig && this.loading === null
  }

  /**
   * A home's presence event: what of it changes what the children were told
   * (a new home's joins of members already known are not news); null when nothing.
   */
  onEvent(event: PresenceChange): PresenceChange | null {
    this.loading?.push(event)
    if (!this.members) return event
    const joins = event.joins.filter((m) => !this.members!.has(m.user))
    const leaves = event.leaves.filter((u) => this.members!.has(u))
    apply(this.members, { joins, leaves })
    return joins.length === 0 && leaves.length === 0 ? null : { joins, leaves }
  }

  /** Starts a snapshot; false when one is already asked for. */
  startSnapshot(): boolean {
    if (this.loading) return false
    this.loading = []
    return true
  }

  /**
   * The home's answer to a snapshot: `count` members of which `members` are
   * listed. Returns the difference from what the children were told when there
   * was a mirror before (a settle after a home change), else null.
   */
  snapshot(count: number, members: readonly Member[]): PresenceChange | null {
    const events = this.loading ?? []
    this.loading = null
    // Past the members a presence answer lists (kept under a link frame) the node knows too little to compare.
    this.tooBig = count > members.length
    if (this.tooBig) {
      this.members = null
      return null
    }
    const now = new Map(members.map((m) => [m.user, m]))
    for (const e of events) apply(now, e)
    const before = this.members
    this.members = now
    if (!before) return null
    const joins = [...now.values()].filter((m) => !before.has(m.user))
    const leaves = [...before.keys()].filter((u) => !now.has(u))
    return joins.length + leaves.length === 0 ? null : { joins, leaves }
  }

  /** The snapshot could not be read: the next subscriber or home change asks again. */
  snapshotFailed(): void {
    this.loading = null
  }
}

function apply(members: Map<string, Member>, { joins, leaves }: PresenceChange): void {
  for (const m of joins) members.set(m.user, m)
  for (const u of leaves) members.delete(u)
}
