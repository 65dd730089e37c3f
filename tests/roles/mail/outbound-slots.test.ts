// Delivery slots alone: at most perDomain per destination and perNode in all; a take past either waits (never fails)
// and gets its slot, in order, as soon as one is released.
import t from 'tap'
import { createSlots } from '../../../roles/mail/outbound-slots.js'

t.test('per-domain and node-wide caps; waiting is a wait', async (t) => {
  const slots = createSlots(3, 2)
  const a1 = await slots.take('a.test')
  const a2 = await slots.take('a.test')
  let a3Granted = false
  const a3 = slots.take('a.test').then((release) => ((a3Granted = true), release))
  const b1 = await slots.take('b.test')
  t.equal(slots.busy, 3)
  let b2Granted = false
  const b2 = slots.take('b.test').then((release) => ((b2Granted = true), release))
  await new Promise((r) => setImmediate(r))
  t.notOk(a3Granted, 'a third delivery to a.test waits for the per-domain cap')
  t.notOk(b2Granted, 'b.test waits for the node-wide cap')
  t.equal(slots.waiting, 2)
  a1()
  a1() // a second release of the same slot changes nothing
  await new Promise((r) => setImmediate(r))
  t.ok(a3Granted, 'a freed a.test slot goes to the a.test waiter first in line')
  t.notOk(b2Granted)
  b1()
  const releaseB2 = await b2
  t.ok(b2Granted)
  t.equal(slots.busy, 3)
  ;(await a3)()
  a2()
  releaseB2()
  t.equal(slots.busy, 0)
  t.equal(slots.waiting, 0)
})
