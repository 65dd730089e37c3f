// Wake-ups put off to the end of the turn (roles/app/wake-batch.ts), without threads: a real SlotRing whose reader
// sleeps in this same thread, and a scheduler the test runs by hand in place of setImmediate.
import t from 'tap'
import { SlotRing } from '../../../roles/app/slot-ring.js'
import { WakeBatch } from '../../../roles/app/wake-batch.js'

function put(ring: SlotRing, text: string): boolean {
  const buf = ring.free()!
  return ring.publish(buf.write(text))
}

t.test('entries published in one turn wake their sleeping reader once, at the end of the turn', async (t) => {
  const scheduled: (() => void)[] = []
  const wakes = new WakeBatch((run) => void scheduled.push(run))
  const writer = new SlotRing({ slots: 4, slotSize: 16 })
  const reader = new SlotRing(writer.buffer, 16)
  const wait = reader.sleep()
  t.ok(wait instanceof Promise, 'the reader sleeps')
  let woke = false
  void wait!.then(() => (woke = true))
  t.equal(put(writer, 'one'), true, 'the first entry is to wake it')
  wakes.add(writer)
  t.equal(put(writer, 'two'), false)
  wakes.add(writer)
  t.equal(scheduled.length, 1, 'one end-of-turn run for the whole turn')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(woke, false, 'not woken before the turn ends')
  t.equal(wakes.flush(), 1, 'the end of the turn wakes the one sleeping reader')
  await wait
  t.equal(woke, true)
  t.equal(reader.read()!.toString(), 'one')
  reader.consume()
  t.equal(reader.read()!.toString(), 'two', 'and it reads every entry of the turn')
  reader.consume()
  t.equal(wakes.flush(), 0, 'nothing due: no wake-up')
})

t.test('each turn gets its own run; several rings of one turn share it', async (t) => {
  const scheduled: (() => void)[] = []
  const wakes = new WakeBatch((run) => void scheduled.push(run))
  const rings = [0, 1].map(() => new SlotRing({ slots: 2, slotSize: 16 }))
  const readers = rings.map((ring) => new SlotRing(ring.buffer, 16))
  const waits = readers.map((reader) => reader.sleep())
  for (const ring of rings) {
    t.equal(put(ring, 'x'), true)
    wakes.add(ring)
  }
  t.equal(scheduled.length, 1)
  scheduled[0]!()
  await Promise.all(waits)
  t.same(readers.map((reader) => reader.read()?.toString()), ['x', 'x'], 'both readers woke')
  readers.forEach((reader) => reader.consume())
  const again = readers[0]!.sleep()
  put(rings[0]!, 'y')
  wakes.add(rings[0]!)
  t.equal(scheduled.length, 2, 'a later turn schedules its own run')
  scheduled[1]!()
  await again
  t.equal(readers[0]!.read()?.toString(), 'y')
})

t.test('by default the wake-up runs at the end of the event loop turn (setImmediate)', async (t) => {
  const wakes = new WakeBatch()
  const writer = new SlotRing({ slots: 2, slotSize: 16 })
  const reader = new SlotRing(writer.buffer, 16)
  const wait = reader.sleep()
  t.equal(put(writer, 'z'), true)
  wakes.add(writer)
  await wait
  t.equal(reader.read()?.toString(), 'z')
})
