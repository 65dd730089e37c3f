// Mirroring the members of a channel bigger than one presence answer (1000): a node reads them from the home page
// by page, and a settle after a home change compares all of them. A real Hub answers through the home's ops.
import t from 'tap'
import { captureLog } from '../../helpers/meta.js'
import { Hub, type HubEvent, type Member, type Sink } from '../../../roles/live/hub.js'
import { createHomeOps } from '../../../roles/live/link.js'
import { newLocalChannel } from '../../../roles/live/local-channel.js'
import { createPresenceSnapshot } from '../../../roles/live/presence-snapshot.js'
import type { ChildrenChannel } from '../../../lib/process/role.js'

const LIMITS = { historyBytes: 1024 ** 2, maxMessageBytes: 64 * 1024, historySize: 10, historyAgeMs: 60_000 }
const sink = (id: string): Sink => ({ id, send: (_e: HubEvent) => {} })

t.test('the home pages its members in user order; a count-only channel lists none', async (t) => {
  const hub = new Hub({ ...LIMITS, countOnly: (ch) => ch.startsWith('stadium:') })
  const s = sink('n1')
  for (let i = 0; i < 2500; i++) hub.join(s, 'room:big', { user: `u${String(i).padStart(5, '0')}`, ...(i % 2 ? { info: { i } } : {}) })
  const first = hub.presencePage('room:big', '')
  t.match(first, { count: 2500, more: true })
  t.equal(first.members.length, 1000)
  t.same(first.members.slice(0, 2), [{ user: 'u00000' }, { user: 'u00001', info: { i: 1 } }])
  const last = hub.presencePage('room:big', 'u01999')
  t.same({ n: last.members.length, more: last.more, first: last.members[0]!.user }, { n: 500, more: false, first: 'u02000' })
  hub.join(s, 'stadium:1', { user: 'x' })
  t.same(hub.presencePage('stadium:1', ''), { count: 1, members: [], more: false })
  t.same(hub.presencePage('room:none', ''), { count: 0, members: [], more: false })
  const ops = createHomeOps(hub)
  t.throws(() => ops.presence(s, { ch: 'room:big', after: 5 }), { code: 4003 }, 'a bad cursor is refused')
  t.match(ops.presence(s, { ch: 'room:big' }), { count: 2500 }, 'without after: the answer clients get, 1000 listed')
  t.equal((ops.presence(s, { ch: 'room:big' }) as { members: Member[] }).members.length, 1000)
})

t.test('a settle over 2,500 members: every member of the dead home leaves, with members coming and going between pages', async (t) => {
  const hub = new Hub(LIMITS)
  const ops = createHomeOps(hub)
  const alive = sink('node-alive')
  const ch = 'room:big'
  const user = (i: number) => `u${String(i).padStart(5, '0')}`
  const sent: unknown[] = []
  const children = { send: (_child: number, msg: unknown) => void sent.push(msg) } as unknown as ChildrenChannel
  const l = newLocalChannel('home-old')
  l.children.add(1)
  let pages = 0
  let meanwhile: unknown = null
  const snapshot = createPresenceSnapshot({
    log: captureLog('silent').log, children, current: () => l, isCountOnly: () => false,
    homeRequest: async <T>(_home: string, _op: 'presence', body: Record<string, unknown>) => {
      pages++
      // Between the first and second page: one member joins at the new home and one listed already leaves.
      if (pages === 2) {
        hub.join(alive, ch, { user: 'zz-new' })
        hub.leave(alive, ch, user(1))
        meanwhile = l.presence.onEvent({ joins: [{ user: 'zz-new' }], leaves: [user(1)] })
      }
      return ops.presence(alive, body) as T
    },
  })
  // What the node knew from the old home: 2,500 members, of which the dead node's 500 (u02000..u02499).
  l.presence.startSnapshot()
  l.presence.snapshot(2500, Array.from({ length: 2500 }, (_, i) => ({ user: user(i) })))
  // The new home has only the surviving members.
  for (let i = 0; i < 2000; i++) hub.join(alive, ch, { user: user(i) })
  l.home = 'home-new'
  snapshot(ch, l, true)
  await t.resolveMatch(new Promise((resolve) => setImmediate(function poll() { return sent.length > 0 ? resolve(sent) : setImmediate(poll) })), [{ k: 'presence', ch }])
  const change = sent[0] as { joins: Member[]; leaves: string[] }
  t.equal(pages, 3, 'three pages of at most 1000')
  t.same(meanwhile, { joins: [{ user: 'zz-new' }], leaves: [user(1)] }, 'a join and a leave between pages reach the children as they come')
  t.same(change.leaves, Array.from({ length: 500 }, (_, i) => user(2000 + i)), 'the dead home\'s 500 members leave, and no one else')
  t.same(change.joins, [], 'no join is sent twice')
})
