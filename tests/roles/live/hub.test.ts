// The home's channel state: sequences, bounded history by count, age and bytes, the size limit, catch-up, presence refcounts, dropped sinks.
import t from 'tap'
import { Hub, type HubEvent, type Sink } from '../../../roles/live/hub.js'

const LIMITS = { historyBytes: 8 * 1024 ** 2, maxMessageBytes: 64 * 1024 }

function sink(id: string): Sink & { events: HubEvent[] } {
  const events: HubEvent[] = []
  return { id, events, send: (e) => void events.push(e) }
}

t.test('sequences start at a time-based base and grow by one; history is bounded by count and age', async (t) => {
  let now = 1_000_000
  const hub = new Hub({ ...LIMITS, historySize: 3, historyAgeMs: 1000, now: () => now })
  const s = sink('n1')
  const sub = hub.subscribe(s, 'c', undefined)
  t.same(sub, { seq: now * 1000, recovered: true, messages: [] })
  const seqs = [1, 2, 3, 4].map((i) => hub.publish('c', i).seq)
  t.same(seqs, [1, 2, 3, 4].map((i) => now * 1000 + i))
  t.equal(s.events.length, 4, 'every message reaches the sink once')
  t.same(hub.catchup('c', seqs[0]).messages.map((m) => m.data), [2, 3, 4], 'since the first: the rest')
  const pastGap = hub.catchup('c', seqs[0]! - 1)
  t.same({ ...pastGap, messages: pastGap.messages.map((m) => m.seq) }, { seq: seqs[3], recovered: false, gap: { from: seqs[0], to: seqs[0], cause: 'overflow' }, messages: seqs.slice(1) }, 'count bound: the first is gone, the three held after it follow')
  t.same(hub.catchup('c', seqs[0]! - 1, 2).messages.map((m) => m.seq), seqs.slice(1, 3), 'up to the limit')
  t.same(hub.catchup('c', seqs[3]), { seq: seqs[3], recovered: true, messages: [] }, 'nothing missed')
  t.same(hub.catchup('c', seqs[3]! + 5).gap, { from: seqs[3]! + 6, to: seqs[3]! + 5, cause: 'lost' }, 'a since from the future is not covered: of unknown length')
  now += 2000
  t.same(hub.catchup('c', seqs[2]), { seq: seqs[3], recovered: false, gap: { from: seqs[3], to: seqs[3], cause: 'expired' }, messages: [] }, 'age bound: all of it expired')
})

t.test('presence: one member per user across sinks; a dropped sink leaves', async (t) => {
  const hub = new Hub({ ...LIMITS, historySize: 10, historyAgeMs: 60_000 })
  const a = sink('a')
  const b = sink('b')
  hub.subscribe(a, 'p')
  hub.join(a, 'p', { user: 'u', info: { n: 1 } })
  hub.join(b, 'p', { user: 'u' })
  t.same(hub.presence('p'), { count: 1, members: [{ user: 'u', info: { n: 1 } }] })
  t.equal(a.events.filter((e) => e.k === 'presence').length, 1, 'one join')
  hub.leave(a, 'p', 'u')
  t.equal(hub.presence('p').count, 1, 'still there through b')
  hub.dropSink(b)
  t.equal(hub.presence('p').count, 0)
  t.match(a.events.at(-1), { k: 'presence', leaves: ['u'] })
})

t.test('a node that left the routing table: its members leave every channel, its interest stays', async (t) => {
  const hub = new Hub({ ...LIMITS, historySize: 10, historyAgeMs: 60_000 })
  const here = sink('self')
  const gone = sink('live-b#3')
  const other = sink('live-bb#4')
  hub.subscribe(here, 'p')
  hub.subscribe(gone, 'p')
  hub.join(gone, 'p', { user: 'only-b' })
  hub.join(gone, 'p', { user: 'both' })
  hub.join(here, 'p', { user: 'both' })
  hub.join(other, 'p', { user: 'on-bb' })
  hub.join(gone, 'q', { user: 'only-b' })
  hub.dropNodeMembers('live-b')
  t.same(hub.presence('p').members.map((m) => m.user).sort(), ['both', 'on-bb'], 'a node id that is a prefix of another is not confused with it')
  t.equal(hub.presence('q').count, 0)
  t.match(here.events.at(-1), { k: 'presence', ch: 'p', joins: [], leaves: ['only-b'] })
  hub.publish('p', 'still')
  t.match(gone.events.at(-1), { k: 'msg', data: 'still' }, 'its interest stays (a drained node serves through its grace)')
})

t.test('count-only presence: no joins or leaves; the count, once per flush and only when it changed', async (t) => {
  const hub = new Hub({ ...LIMITS, historySize: 10, historyAgeMs: 60_000, countOnly: (ch) => ch.startsWith('crowd:') })
  const s = sink('s')
  hub.subscribe(s, 'crowd:1')
  for (let i = 0; i < 100; i++) hub.join(s, 'crowd:1', { user: `u${i}` })
  hub.leave(s, 'crowd:1', 'u0')
  t.equal(s.events.length, 0, 'nothing sent one by one')
  hub.flushCounts()
  t.same(s.events, [{ k: 'count', ch: 'crowd:1', count: 99 }], 'one count for 101 changes')
  hub.flushCounts()
  t.equal(s.events.length, 1, 'nothing changed: nothing sent')
  hub.join(s, 'crowd:1', { user: 'x' })
  hub.leave(s, 'crowd:1', 'x')
  hub.flushCounts()
  t.equal(s.events.length, 1, 'a join and a leave between flushes: the count is the same, nothing sent')
  t.same(hub.presence('crowd:1'), { count: 99, members: [] }, 'the answer lists nobody')
  hub.dropSink(s)
  hub.flushCounts()
  t.same(hub.presence('crowd:1').count, 0)
  hub.join(s, 'plain', { user: 'u' })
  t.equal(hub.presence('plain').members.length, 1, 'other channels list members')
})

t.test('a history read without since gives the latest messages still kept', async (t) => {
  const hub = new Hub({ ...LIMITS, historySize: 4, historyAgeMs: 60_000 })
  for (let i = 1; i <= 6; i++) hub.publish('h', i)
  t.same(hub.history('h', undefined, 2).messages.map((m) => m.data), [5, 6], 'the latest two')
  t.same(hub.history('h', undefined, 100).messages.map((m) => m.data), [3, 4, 5, 6], 'at most what history keeps')
  const first = hub.history('h', undefined, 100).messages[0]!.seq
  t.same(hub.history('h', first, 100).messages.map((m) => m.data), [4, 5, 6], 'with since: what came after it')
  t.same(hub.history('empty', undefined, 10), { seq: hub.history('empty', undefined, 10).seq, recovered: true, messages: [] })
})

t.test('regression: a message over the size limit enters no channel, whoever publishes it', async (t) => {
  const hub = new Hub({ historySize: 1000, historyAgeMs: 60_000, historyBytes: 8 * 1024 ** 2, maxMessageBytes: 1024 })
  const s = sink('n1')
  hub.subscribe(s, 'big')
  const fits = 'x'.repeat(1022) // 1,024 bytes as JSON text, quotes included
  hub.publish('big', fits)
  t.throws(() => hub.publish('big', `${fits}x`), { code: 4004, status: 413, message: /1025 bytes exceeds --live-max-message \(1024 bytes\)/ })
  t.throws(() => hub.publish('big', 'é'.repeat(600)), { code: 4004 }, 'measured in UTF-8 bytes, not characters')
  t.throws(() => hub.publish('big', { n: 1n }), { code: 4003 }, 'data with no JSON text is refused')
  t.equal(s.events.length, 1, 'only the message that fits was sent')
  t.same(hub.history('big', undefined, 10).messages.map((m) => m.data), [fits], 'and kept')
})

t.test('regression: history is bounded in bytes too, oldest dropped first', async (t) => {
  const hub = new Hub({ historySize: 1000, historyAgeMs: 60_000, historyBytes: 10_000, maxMessageBytes: 4096 })
  const kb = (i: number) => `${i}`.padEnd(998, '.') // 1,000 bytes as JSON text
  const seqs = Array.from({ length: 25 }, (_, i) => hub.publish('h', kb(i)).seq)
  const kept = hub.history('h', undefined, 1000).messages
  t.same(kept.map((m) => m.data), Array.from({ length: 10 }, (_, i) => kb(15 + i)), 'the newest 10,000 bytes')
  t.equal(hub.catchup('h', seqs[14]).recovered, true, 'a since within the kept bytes is recovered')
  t.same(hub.catchup('h', seqs[13]).gap, { from: seqs[14], to: seqs[14], cause: 'overflow' }, 'one before it is not: pushed out by bytes')
  hub.publish('h', 'x'.repeat(2998)) // 3,000 bytes
  t.equal(hub.history('h', undefined, 1000).messages.length, 8, 'a large message pushes out as many bytes as it brings')

  const none = new Hub({ historySize: 1000, historyAgeMs: 60_000, historyBytes: 0, maxMessageBytes: 4096 })
  none.publish('n', 1)
  t.same(none.history('n', undefined, 10).messages, [], '--live-history-bytes 0 keeps nothing')
})

t.test('gap reports: the range a resume cannot get back and why its first message is gone', async (t) => {
  let now = 5_000_000
  const hub = new Hub({ ...LIMITS, historySize: 3, historyAgeMs: 1000, now: () => now })
  const seqs = [1, 2, 3, 4, 5].map((i) => hub.publish('g', i).seq)
  t.same(hub.catchup('g', seqs[0]).gap, { from: seqs[1], to: seqs[1], cause: 'overflow' }, 'pushed out by the count bound')
  now += 600
  seqs.push(...[6, 7].map((i) => hub.publish('g', i).seq))
  now += 600
  // 3, 4, 5 expire (older than 1 s); 6 and 7 are kept.
  t.same(hub.catchup('g', seqs[0]).gap, { from: seqs[1], to: seqs[4], cause: 'overflow' }, 'the first missing one overflowed')
  t.same(hub.catchup('g', seqs[3]).gap, { from: seqs[4], to: seqs[4], cause: 'expired' }, 'the first missing one expired')
  t.equal(hub.catchup('g', seqs[4]).recovered, true, 'from the last expired one on: covered')

  const moved = new Hub({ ...LIMITS, historySize: 3, historyAgeMs: 1000, now: () => now })
  const first = moved.publish('g', 'new home').seq
  t.same(moved.catchup('g', seqs[6]).gap, { from: seqs[6]! + 1, to: first - 1, cause: 'lost' }, 'a home that never had them: lost')

  const idle = new Hub({ ...LIMITS, historySize: 3, historyAgeMs: 1000, now: () => now })
  const last = idle.publish('i', 1).seq
  now += 2000
  idle.sweep()
  t.equal(idle.size, 0, 'an idle channel with its history expired is forgotten')
  const again = idle.publish('i', 2).seq
  t.same(idle.catchup('i', last - 1).gap, { from: last, to: again - 1, cause: 'expired' }, 'a channel forgotten while idle expired, it was not lost')
})

t.test('publish ids: a retried publish is stored and sent once and answered with the first sequence, while history keeps it', async (t) => {
  let now = 9_000_000
  const hub = new Hub({ ...LIMITS, historySize: 3, historyAgeMs: 1000, now: () => now })
  const s = sink('n1')
  hub.subscribe(s, 'p')
  const first = hub.publish('p', 'hello', 'key-1')
  now += 10
  t.same(hub.publish('p', 'hello', 'key-1'), first, 'the retry gets the original seq and ts')
  t.same(hub.publish('p', 'other data, same id', 'key-1'), first, 'the id decides, not the data')
  t.equal(s.events.length, 1, 'sent once')
  t.same(hub.history('p', undefined, 10).messages.map((m) => m.data), ['hello'], 'stored once')
  const second = hub.publish('p', 'hello', 'key-2')
  t.equal(second.seq, first.seq + 1, 'another id is another message')
  t.equal(hub.publish('q', 'hello', 'key-1').seq === first.seq, false, 'ids are per channel')
  for (const n of [1, 2, 3]) hub.publish('p', n)
  t.equal(hub.publish('p', 'hello', 'key-1').seq, second.seq + 4, 'out of the history window: a new message')
  now += 2000
  const after = hub.publish('p', 'x', 'key-3')
  now += 2000
  t.equal(hub.publish('p', 'x', 'key-3').seq, after.seq + 1, 'expired with its message: a new one')
})

t.test('replication: appended messages are seen only once committed; a snapshot in pages rebuilds the same channel elsewhere', async (t) => {
  const home = new Hub({ ...LIMITS, historySize: 100, historyAgeMs: 60_000 })
  const s = sink('n1')
  const start = home.subscribe(s, 'r').seq
  const one = home.append('r', 'one', 'id-1').msg
  const two = home.append('r', { n: 2 }).msg
  t.equal(s.events.length, 0, 'nothing sent before the commit')
  t.same(home.catchup('r', start), { seq: start, recovered: true, messages: [] }, 'a resume sees only committed messages')
  t.same(home.history('r', undefined, 10).messages, [], 'a history read too')
  t.same(home.append('r', 'again', 'id-1'), { msg: one, fresh: false }, 'a retried publish id names the message it first stored, committed or not')
  home.commit('r', one.seq)
  t.same(s.events.map((e) => e.k === 'msg' && e.seq), [one.seq], 'the commit sends what it covers, in order')
  home.commit('r', two.seq)
  t.same(home.catchup('r', start).messages.map((m) => m.data), ['one', { n: 2 }])
  for (let i = 0; i < 10; i++) home.publish('r', 'x'.repeat(100))
  const first = home.snapshot('r', 250)!
  t.equal(first.more, true, 'a snapshot stops at its byte budget')
  t.equal(first.snap.messages.length, 4, 'whole messages up to the budget (5 + 7 + 102 + 102 bytes)')
  t.equal(home.snapshot('r', 1)!.snap.messages.length, 1, 'at least one message, whatever the budget')
  const replica = new Hub({ ...LIMITS, historySize: 100, historyAgeMs: 60_000 })
  t.equal(replica.applyReplica('r', { seq: first.snap.seq + 1, ts: 0, data: 1 }), false, 'a replica without the channel takes no message: it needs the state')
  replica.restore('r', first.snap)
  let after = first.snap.seq
  for (;;) {
    const page = home.messagesAfter('r', after, 250)
    for (const m of page.messages) t.ok(replica.applyReplica('r', m), `replica message ${m.seq}`)
    after = page.messages.at(-1)?.seq ?? after
    if (!page.more) break
  }
  t.equal(replica.applyReplica('r', { seq: after + 5, ts: 0, data: 1 }), false, 'a message out of order is refused')
  t.same(replica.catchup('r', start), home.catchup('r', start), 'the replica answers a resume as the home does')
  t.same(replica.append('r', 'retry', 'id-1').msg.seq, one.seq, 'publish ids travel with the state')
  t.equal(replica.publish('r', 'next').seq, home.positions('r')!.seq + 1, 'the replica, as the new home, goes on with the same sequence')
  replica.drop('r')
  t.equal(replica.has('r'), false, 'a dropped channel is not held')
})
