// A Live node's mirror of a channel's members: events before and during a snapshot, and the difference a settle sends.
import t from 'tap'
import { PresenceMirror } from '../../../roles/live/presence-mirror.js'

const member = (user: string) => ({ user, info: { name: user } })

t.test('before the first snapshot every event passes as it came, and a first snapshot reports no difference', async (t) => {
  const m = new PresenceMirror()
  t.ok(m.wanted)
  const event = { joins: [member('a')], leaves: [] }
  t.equal(m.onEvent(event), event)
  t.ok(m.startSnapshot())
  t.notOk(m.wanted, 'not asked twice')
  t.notOk(m.startSnapshot())
  m.onEvent({ joins: [member('b')], leaves: [] })
  t.equal(m.snapshot(1, [member('a')]), null, 'the first snapshot is what the node knows')
  t.notOk(m.wanted, 'mirrored')
  t.same(m.onEvent({ joins: [member('b')], leaves: [] }), null, 'b arrived during the snapshot and was applied on top of it')
})

t.test('after a home change the new snapshot is compared: the members of the dead home leave, new ones join', async (t) => {
  const m = new PresenceMirror()
  m.startSnapshot()
  m.snapshot(3, [member('a'), member('b'), member('c')])
  t.same(m.onEvent({ joins: [member('a')], leaves: [] }), null, 'a join of a known member is not news')
  t.same(m.onEvent({ joins: [member('d')], leaves: ['zz'] }), { joins: [member('d')], leaves: [] }, 'only what changes the children\'s view')
  m.startSnapshot()
  const change = m.snapshot(3, [member('a'), member('d'), member('e')])
  t.same(change, { joins: [member('e')], leaves: ['b', 'c'] })
  t.equal(m.onEvent({ joins: [], leaves: ['b'] }), null, 'b is gone already')
})

t.test('a channel with more members than a presence answer lists is not mirrored', async (t) => {
  const m = new PresenceMirror()
  m.startSnapshot()
  t.equal(m.snapshot(5000, [member('a')]), null)
  t.notOk(m.wanted, 'no snapshot per new subscriber')
  const event = { joins: [member('x')], leaves: [] }
  t.equal(m.onEvent(event), event, 'events pass as they came')
})

t.test('a failed snapshot can be asked again', async (t) => {
  const m = new PresenceMirror()
  t.ok(m.startSnapshot())
  m.snapshotFailed()
  t.ok(m.wanted)
  t.ok(m.startSnapshot())
})
