// The negative cache and single-flight fills that the fileserver parent and each child keep (miss-cache.ts).
import t from 'tap'
import { createMissCache, type FillResult } from '../../../roles/fileserver/miss-cache.js'

/** A fill the test finishes by hand. */
function deferred() {
  let finish!: (r: FillResult) => void
  const result = new Promise<FillResult>((r) => (finish = r))
  return { result, finish }
}

t.test('one fill per key at a time; its missing is remembered until a change names the key', async (t) => {
  const misses = createMissCache()
  const d = deferred()
  let runs = 0
  const fill = () => {
    runs++
    return d.result
  }
  const a = misses.fill('k', fill)
  const b = misses.fill('k', fill)
  t.equal(runs, 1, 'the second caller shares the running fill')
  d.finish('missing')
  t.same(await Promise.all([a, b]), ['missing', 'missing'])
  t.ok(misses.has('k'), 'remembered as missing')
  t.equal(misses.size, 1)
  misses.changed(['other'], false)
  t.ok(misses.has('k'), 'a change to another key keeps it')
  misses.changed(['k'], false)
  t.notOk(misses.has('k'), 'a change naming it forgets it')
  t.equal(await misses.fill('k', async () => 'cached'), 'cached', 'a later fill runs again')
  t.notOk(misses.has('k'), 'a found key is not missing')
})

t.test('a change during a fill: the result is discarded and fetched again; a missing that may predate a change is not kept', async (t) => {
  const misses = createMissCache()
  const first = deferred()
  const second = deferred()
  const fetches = [first, second]
  const discarded: FillResult[] = []
  const p = misses.fill('k', () => fetches.shift()!.result, (stale) => discarded.push(stale))
  misses.changed(['k'], false)
  first.finish('cached')
  await new Promise((r) => setImmediate(r))
  misses.changed(['k'], false)
  second.finish('missing')
  t.equal(await p, 'missing', 'the second fetch answers')
  t.same(discarded, ['cached'], 'the first result was discarded')
  t.equal(fetches.length, 0, 'fetched twice, not more')
  t.notOk(misses.has('k'), 'a missing with a change during its fetch is not kept')

  const d = deferred()
  let runs = 0
  const q = misses.fill('j', () => {
    runs++
    return d.result
  })
  misses.changed([], true)
  d.finish('missing')
  t.equal(await q, 'missing')
  t.equal(runs, 2, 'a change of every key counts for running fills too')
  t.ok(misses.has('j'), 'missing again after the change: remembered')
})

t.test('bounded: past the limit the oldest miss is forgotten; settled waits for running fills', async (t) => {
  const misses = createMissCache(2)
  for (const key of ['a', 'b', 'c']) await misses.fill(key, async () => 'missing')
  t.same(['a', 'b', 'c'].map((k) => misses.has(k)), [false, true, true])
  const d = deferred()
  let done = false
  void misses.fill('slow', () => d.result)
  const settled = misses.settled().then(() => (done = true))
  await new Promise((r) => setImmediate(r))
  t.notOk(done, 'not before the running fill ends')
  d.finish('cached')
  await settled
  t.ok(done)
})
