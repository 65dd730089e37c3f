import t from 'tap'
import { createGroupCommit } from '../../../lib/core/group-commit.js'

/** A flush the test finishes by hand: each call is recorded with its items and how to end it. */
function manualFlush() {
  const calls: { items: readonly number[]; finish: (r: readonly (string | Error)[] | Error) => void }[] = []
  const flush = (items: readonly number[]) => new Promise<readonly (string | Error)[]>((resolve, reject) => {
    calls.push({ items, finish: (r) => (r instanceof Error ? reject(r) : resolve(r)) })
  })
  return { calls, flush }
}

const settle = () => new Promise((r) => setImmediate(r))

t.test('the first item goes alone at once; those arriving during a flush go together in the next', async (t) => {
  const { calls, flush } = manualFlush()
  const g = createGroupCommit<number, string>({ flush, maxItems: 100, maxInFlight: 1 })
  const first = g.submit(1)
  await settle()
  t.same(calls.map((c) => c.items), [[1]])
  const rest = [2, 3, 4].map((n) => g.submit(n))
  await settle()
  t.equal(calls.length, 1, 'nothing else runs while the flush is in flight')
  t.equal(g.pending, 4)
  calls[0]!.finish(['one'])
  t.equal(await first, 'one')
  await settle()
  t.same(calls.map((c) => c.items), [[1], [2, 3, 4]])
  calls[1]!.finish(['two', new Error('three failed'), 'four'])
  const results = await Promise.allSettled(rest)
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'], 'an Error result rejects that item alone')
  t.equal(g.pending, 0)
})

t.test('a failed flush rejects its whole group; the next group still runs', async (t) => {
  const { calls, flush } = manualFlush()
  const g = createGroupCommit<number, string>({ flush, maxItems: 10, maxInFlight: 1 })
  const a = g.submit(1)
  await settle()
  const b = g.submit(2)
  calls[0]!.finish(new Error('disk full'))
  await t.rejects(a, { message: 'disk full' })
  await settle()
  calls[1]!.finish(['ok'])
  t.equal(await b, 'ok')
})

t.test('groups are cut by maxItems and maxWeight; a heavy item goes alone; maxInFlight flushes overlap', async (t) => {
  const { calls, flush } = manualFlush()
  const g = createGroupCommit<number, string>({ flush, maxItems: 3, maxInFlight: 2, weight: (n) => n, maxWeight: 10 })
  const all = [1, 1, 1, 1, 1, 5, 6, 20, 1].map((n) => g.submit(n))
  await settle()
  t.same(calls.map((c) => c.items), [[1], [1]], 'two flushes at once, each taking what was there')
  calls[0]!.finish(['a'])
  await settle()
  t.same(calls[2]!.items, [1, 1, 1], 'at most 3 items')
  calls[1]!.finish(['b'])
  await settle()
  t.same(calls[3]!.items, [5], '5 + 6 would pass 10')
  calls[2]!.finish(['c', 'd', 'e'])
  await settle()
  t.same(calls[4]!.items, [6])
  calls[3]!.finish(['f'])
  await settle()
  t.same(calls[5]!.items, [20], 'an item heavier than maxWeight still goes, alone')
  calls[4]!.finish(['g'])
  await settle()
  t.same(calls[6]!.items, [1])
  calls[5]!.finish(['h'])
  calls[6]!.finish(['i'])
  t.same(await Promise.all(all), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'])
})

t.test('a flush answering the wrong number of results rejects the group', async (t) => {
  const g = createGroupCommit<number, string>({ flush: async () => ['only one'], maxItems: 10, maxInFlight: 1 })
  const first = g.submit(1)
  const [a, b] = await Promise.allSettled([first, g.submit(2)])
  t.equal(a!.status, 'fulfilled')
  t.equal(b!.status, 'fulfilled', 'the second went in a group of its own')
  const g2 = createGroupCommit<number, string>({ flush: async () => [], maxItems: 10, maxInFlight: 1 })
  await t.rejects(g2.submit(1), { message: /answered 0 results for 1 items/ })
})
