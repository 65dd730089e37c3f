// The claim gate (roles/app/claim-gate.ts) without threads: both sides in one thread, over one SharedArrayBuffer
// as the main thread and a worker share it. Whoever swaps first wins; a request runs once or is taken back, never both.
import t from 'tap'
import { ClaimGate, OfferIds } from '../../../roles/app/claim-gate.js'

t.test('a request offered is claimed by the worker once; the main thread can no longer take it back', async (t) => {
  const main = new ClaimGate(5)
  const worker = new ClaimGate(main.buffer)
  t.equal(worker.size, 5)
  main.offer(2, 7)
  t.ok(worker.claim(2, 7), 'the worker starts it')
  t.notOk(worker.claim(2, 7), 'never twice')
  t.notOk(main.takeBack(2, 7), 'too late to take it back')
})

t.test('a request taken back is never claimed', async (t) => {
  const main = new ClaimGate(5)
  const worker = new ClaimGate(main.buffer)
  main.offer(0, 3)
  t.ok(main.takeBack(0, 3))
  t.notOk(worker.claim(0, 3), 'the worker drops it')
  t.notOk(main.takeBack(0, 3), 'and it is not taken back twice')
})

t.test('a stale offer never matches the request offered after it in the same cell', async (t) => {
  const main = new ClaimGate(1)
  const worker = new ClaimGate(main.buffer)
  const ids = new OfferIds()
  const first = ids.next()
  main.offer(0, first)
  t.ok(main.takeBack(0, first))
  const second = ids.next()
  t.not(second, first)
  main.offer(0, second)
  t.notOk(worker.claim(0, first), 'the first offer, read late by the worker, is not run')
  t.ok(worker.claim(0, second), 'the second is')
})

t.test('cells are independent: one claimed, another taken back, each exactly once', async (t) => {
  const main = new ClaimGate(3)
  const worker = new ClaimGate(main.buffer)
  main.offer(0, 1)
  main.offer(1, 2)
  main.offer(2, 3)
  t.ok(worker.claim(0, 1))
  t.ok(main.takeBack(1, 2))
  t.ok(main.takeBack(2, 3))
  t.same([worker.claim(1, 2), worker.claim(2, 3)], [false, false])
})

t.test('the free cell is the first no held request uses', async (t) => {
  t.equal(ClaimGate.freeCell([]), 0)
  t.equal(ClaimGate.freeCell([{ cell: 0 }, { cell: 2 }]), 1)
  t.equal(ClaimGate.freeCell([{ cell: 1 }, { cell: 0 }, { cell: 2 }]), 3)
})

t.test('offer ids stay in 1 .. 2^31-1 and wrap past the top', async (t) => {
  const ids = new OfferIds()
  t.equal(ids.next(), 1)
  ;(ids as unknown as { last: number }).last = 0x7fffffff - 1
  t.equal(ids.next(), 0x7fffffff)
  t.equal(ids.next(), 1, 'wraps to 1, never 0 (0 marks a settled cell)')
})
