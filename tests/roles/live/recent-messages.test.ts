// What a Live child keeps for subscriptions waiting for their answer: the messages after the answer's snapshot are
// added once and in order; when more came than it keeps, a resume gets a gap of cause `dropped` (never a silent jump)
// and a subscription from now starts after what went.
import t from 'tap'
import type { Catchup, LiveMessage } from '../../../roles/live/channel-history.js'
import { RecentMessages } from '../../../roles/live/recent-messages.js'

const msg = (seq: number): LiveMessage => ({ ch: 'room', seq, ts: seq, data: seq })
const seqs = (c: Catchup) => c.messages.map((m) => m.seq)
const pushed = (max: number, from: number, to: number): RecentMessages => {
  const r = new RecentMessages(max)
  for (let seq = from; seq <= to; seq++) r.push(msg(seq))
  return r
}

t.test('nothing pushed out: the answer, then what came after its snapshot, each seq once', async (t) => {
  const r = pushed(4, 5, 9)
  const answer: Catchup = { seq: 6, recovered: true, messages: [msg(5), msg(6)] }
  const merged = r.merge(answer, true)
  t.same(seqs(merged), [5, 6, 7, 8, 9])
  t.equal(merged.recovered, true)
  t.notOk('gap' in merged)
  const past: Catchup = { seq: 9, recovered: true, messages: [] }
  t.equal(r.merge(past, false), past, 'an answer past everything kept is itself')
})

t.test('pushed out after the snapshot: a resume is told the exact range, cause dropped', async (t) => {
  // Keeps at least 3: pushing 1..6 trims 1..3 when the sixth arrives.
  const r = pushed(3, 1, 6)
  const merged = r.merge({ seq: 1, recovered: true, messages: [msg(1)] }, true)
  t.same(merged.gap, { from: 2, to: 3, cause: 'dropped' })
  t.equal(merged.recovered, false)
  t.same(seqs(merged), [1, 4, 5, 6], 'what came before and after the gap, in order')
  t.equal(merged.seq, 1)
})

t.test('pushed out, but all before the snapshot: nothing is missing', async (t) => {
  const r = pushed(3, 1, 6)
  const merged = r.merge({ seq: 4, recovered: true, messages: [] }, true)
  t.same(seqs(merged), [5, 6])
  t.equal(merged.recovered, true)
})

t.test('a subscription from now starts after what was pushed out', async (t) => {
  const r = pushed(3, 1, 6)
  const merged = r.merge({ seq: 1, recovered: true, messages: [] }, false)
  t.equal(merged.recovered, true)
  t.notOk('gap' in merged)
  t.equal(merged.seq, 3, 'its sub-ok names the last one gone')
  t.same(seqs(merged), [4, 5, 6])
})

t.test('an answer that had its own gap: one gap from its start to the last one pushed out, with its cause', async (t) => {
  const r = pushed(3, 11, 16)
  const merged = r.merge({ seq: 12, recovered: false, gap: { from: 3, to: 9, cause: 'overflow' }, messages: [msg(10), msg(11), msg(12)] }, true)
  t.same(merged.gap, { from: 3, to: 13, cause: 'overflow' })
  t.same(seqs(merged), [14, 15, 16], 'only what follows the gap')
})

t.test('clear forgets what was kept and pushed out', async (t) => {
  const r = pushed(3, 1, 6)
  r.clear()
  const answer: Catchup = { seq: 1, recovered: true, messages: [] }
  t.equal(r.merge(answer, true), answer)
})
