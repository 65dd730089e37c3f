/**
 * A Live node asking a channel's home for its members (roles/live/node.ts):
 * the first time, that is what the node knows; after a home change
 * (`settle`), the difference from what the node's children were told is sent
 * to them (./presence-mirror.ts): the members of a home that died leave, and
 * a count-only channel's subscribers get the new home's count. The settle
 * waits for this node's renewal at the new home (createPresenceSettle).
 */
import type { Logger } from '../../lib/core/log.js'
import type { ChildrenChannel } from '../../lib/process/role.js'
import type { Member } from './hub.js'
import type { LocalChannel } from './local-channel.js'

export interface PresenceSnapshotOptions {
  readonly log: Logger
  readonly children: ChildrenChannel
  /** The channel's entry on this node now (another one, or none: the answer is stale). */
  current(ch: string): LocalChannel | undefined
  isCountOnly(ch: string): boolean
  homeRequest<T>(home: string, op: 'presence', body: Record<string, unknown>): Promise<T>
}

/** Members read past this many pages (a million) are not mirrored: the channel is too big to compare (make it count-only). */
const MAX_PAGES = 1000

export function createPresenceSnapshot(o: PresenceSnapshotOptions): (ch: string, l: LocalChannel, settle: boolean) => void {
  const { log, children } = o

  /**
   * Every member at the home, page by page (joins and leaves meanwhile reach the mirror as events). A home that
   * does not page answers one list of at most 1000, and a count above it: the mirror then says it is too big.
   */
  async function readMembers(home: string, ch: string, stale: () => boolean): Promise<{ count: number; members: Member[] }> {
    const members: Member[] = []
    for (let page = 0; page < MAX_PAGES && !stale(); page++) {
      const answer = await o.homeRequest<{ count: number; members: Member[]; more?: boolean }>(home, 'presence', { ch, after: members.at(-1)?.user ?? '' })
      members.push(...answer.members)
      if (answer.more !== true) return { count: answer.more === false ? members.length : answer.count, members }
    }
    return { count: members.length + 1, members }
  }
  return (ch, l, settle) => {
    const home = l.home
    const stale = (): boolean => o.current(ch) !== l || l.home !== home
    if (o.isCountOnly(ch)) {
      if (settle) {
        o.homeRequest<{ count: number }>(home, 'presence', { ch }).then(
          ({ count }) => {
            if (!stale()) for (const child of l.children) children.send(child, { k: 'count', ch, count })
          },
          (err: unknown) => log.warn({ ch, home, err: (err as Error).message }, 'live: could not read the count of a channel at its new home'),
        )
      }
      return
    }
    if (!l.presence.startSnapshot()) return
    readMembers(home, ch, stale).then(
      ({ count, members }) => {
        if (stale()) return l.presence.snapshotFailed()
        const change = l.presence.snapshot(count, members)
        if (!settle || !change) return
        log.info({ ch, home, joins: change.joins.length, leaves: change.leaves.length }, 'live: presence settled after a home change')
        for (const child of l.children) children.send(child, { k: 'presence', ch, ...change })
      },
      (err: unknown) => {
        l.presence.snapshotFailed()
        log.warn({ ch, home, err: (err as Error).message }, 'live: could not read the members of a channel at its home')
      },
    )
  }
}

/**
 * After a home change: the snapshot with `settle`, `ms` after this node's renewal at the new home ended (not after
 * the table: a home may hold every renewal while it takes the channel over, a fill or a handover it waits for, and
 * compared before the other nodes joined their members there, every member seemed to have left).
 */
export function createPresenceSettle(snapshot: (ch: string, l: LocalChannel, settle: boolean) => void, current: (ch: string) => LocalChannel | undefined, ms: number): (ch: string, l: LocalChannel, home: string) => void {
  const settleAfter = (ch: string, l: LocalChannel, home: string): void => {
    l.settle = setTimeout(() => {
      l.settle = null
      if (current(ch) !== l || l.home !== home) return
      if (!l.renewal) return snapshot(ch, l, true)
      void l.renewal.done.then(() => {
        if (current(ch) === l && l.home === home && !l.settle) settleAfter(ch, l, home)
      })
    }, ms).unref()
  }
  return settleAfter
}
