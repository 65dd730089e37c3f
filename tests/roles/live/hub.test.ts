// The home's channel state: sequences, bounded history by count and age, catch-up, presence refcounts, dropped sinks.
import t from 'tap'
import { Hub, type HubEvent, type Sink } from '../../../roles/live/hub.js'

function sink(id: string): Sink & { events: HubEvent[] } {
  const events: HubEvent[] = []
  return { id, events, send: (e) => void events.push(e) }
}

t.test('sequences start at a time-based base and grow by one; history is bounded by count and age', async (t) => {
  let now = 1_000_000
  const hub = new Hub({ historySize: 3, historyAgeMs: 1000, now: () => now })
  const s = sink('n1')
  const sub = hub.subscribe(s, 'c', undefined)
  t.same(sub, { seq: now * 1000, recovered: true, messages: [] })
  const seqs = [1, 2, 3, 4].map((i) => hub.publish('c', i).seq)
  t.same(seqs, [1, 2, 3, 4].map((i) => now * 1000 + i))
  t.equal(s.events.length, 4, 'every message reaches the sink once')
  t.same(hub.catchup('c', seqs[0]).messages.map((m) => m.data), [2, 3, 4], 'since the first: the rest')
  t.same(hub.catchup('c', seqs[0]! - 1), { seq: seqs[3], recovered: false, messages: [] }, 'count bound: the first is gone')
  t.same(hub.catchup('c', seqs[3]), { seq: seqs[3], recovered: true, messages: [] }, 'nothing missed')
  t.equal(hub.catchup('c', seqs[3]! + 5).recovered, false, 'a since from the future is not covered')
  now += 2000
  t.equal(hub.catchup('c', seqs[2]).recovered, false, 'age bound: all of it expired')
})

t.test('presence: one member per user across sinks; a dropped sink leaves', async (t) => {
  const hub = new Hub({ historySize: 10, historyAgeMs: 60_000 })
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

t.test('a history read without since gives the latest messages still kept', async (t) => {
  const hub = new Hub({ historySize: 4, historyAgeMs: 60_000 })
  for (let i = 1; i <= 6; i++) hub.publish('h', i)
  t.same(hub.history('h', undefined, 2).messages.map((m) => m.data), [5, 6], 'the latest two')
  t.same(hub.history('h', undefined, 100).messages.map((m) => m.data), [3, 4, 5, 6], 'at most what history keeps')
  const first = hub.history('h', undefined, 100).messages[0]!.seq
  t.same(hub.history('h', first, 100).messages.map((m) => m.data), [4, 5, 6], 'with since: what came after it')
  t.same(hub.history('empty', undefined, 10), { seq: hub.history('empty', undefined, 10).seq, recovered: true, messages: [] })
})
