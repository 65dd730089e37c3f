import t from 'tap'
import { createAppCache } from '../../../roles/app/cache.js'

t.test('get/set/delete, TTL, the bound evicts the oldest written', async (t) => {
  const cache = createAppCache(3)
  t.equal(cache.get('a'), undefined)
  const value = { n: 1 }
  cache.set('a', value)
  t.equal(cache.get('a'), value, 'kept as given, not copied')
  cache.set('short', 1, 1)
  await new Promise((r) => setTimeout(r, 5))
  t.equal(cache.get('short'), undefined, 'expired')
  t.equal(cache.size, 1, 'an expired entry is dropped when read')
  cache.set('b', 2)
  cache.set('c', 3)
  cache.set('a', 'again')
  cache.set('d', 4)
  t.equal(cache.get('b'), undefined, 'oldest written evicted (rewriting a moved it to the back)')
  t.equal(cache.get('a'), 'again')
  t.equal(cache.delete('a'), true)
  t.equal(cache.delete('a'), false)
  t.throws(() => cache.set('x', 1, -1), RangeError)
  t.throws(() => cache.set('x', 1, Infinity), RangeError)
})
