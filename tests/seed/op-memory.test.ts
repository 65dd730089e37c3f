// The embedded seed's memory of op ids (seed/op-memory.ts): a repeat answers the first attempt without
// running the op again; a failed attempt, an expired id and an id past the cap are forgotten.
import t from 'tap'
import { createOpMemory } from '../../seed/op-memory.js'

function counted() {
  let runs = 0
  return { op: async () => ++runs, runs: () => runs }
}

t.test('a repeat of an op id answers the first attempt; another op id, or none, runs again', async (t) => {
  const once = createOpMemory()
  const c = counted()
  t.equal(await once('tasks.enqueue', 'a', c.op), 1)
  t.equal(await once('tasks.enqueue', 'a', c.op), 1, 'the first answer')
  t.equal(c.runs(), 1, 'applied once')
  t.equal(await once('tasks.enqueue', 'b', c.op), 2)
  t.equal(await once('tasks.enqueue', undefined, c.op), 3, 'no op id: always applied')
  t.equal(await once('ds.putIf', 'a', c.op), 4, 'the same id for another op is not its answer')
})

t.test('a failed attempt is forgotten: the repeat runs it', async (t) => {
  const once = createOpMemory()
  await t.rejects(once('ds.consume', 'x', async () => { throw new Error('store down') }), /store down/)
  await new Promise((r) => setImmediate(r))
  t.equal(await once('ds.consume', 'x', async () => 'value'), 'value')
})

t.test('ids older than the time to live, or past the cap, are forgotten oldest first', async (t) => {
  let now = 0
  const once = createOpMemory(1000, () => now, 3)
  const c = counted()
  await once('op', 'old', c.op)
  now = 1500
  t.equal(await once('op', 'old', c.op), 2, 'expired: applied again')
  for (const id of ['p', 'q', 'r']) await once('op', id, c.op)
  t.equal(c.runs(), 5)
  t.equal(await once('op', 'r', c.op), 5, 'the newest is still remembered')
  await once('op', 's', c.op)
  t.equal(await once('op', 'r', c.op), 5, 'within the cap: still remembered')
  t.equal(await once('op', 'p', c.op), 7, 'past the cap of 3: the oldest was forgotten')
})
