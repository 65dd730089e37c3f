// Rendezvous hashing: stable, balanced, and a membership change moves only the share it must.
import t from 'tap'
import { hashKey, Rendezvous } from '../../../lib/routing/rendezvous.js'

const nodes = (ids: string[]) => ids.map((id) => ({ id }))
const KEYS = Array.from({ length: 50_000 }, (_, i) => `session-${i}-${(i * 2654435761) >>> 0}`)

function owners(table: Rendezvous<{ id: string }>): string[] {
  return KEYS.map((k) => table.pick(k)!.id)
}

t.test('an empty table picks nothing; one node owns everything', async (t) => {
  t.equal(new Rendezvous([]).pick('x'), undefined)
  t.equal(new Rendezvous(nodes(['a'])).pick('x')?.id, 'a')
})

t.test('the owner depends on the key and the set of ids, not their order', async (t) => {
  const a = new Rendezvous(nodes(['live-a', 'live-b', 'live-c']))
  const b = new Rendezvous(nodes(['live-c', 'live-a', 'live-b']))
  t.same(owners(a), owners(b))
  for (const k of KEYS.slice(0, 200)) t.equal(a.rank(k)[0]!.id, a.pick(k)!.id)
})

t.test('keys spread evenly', async (t) => {
  const counts = new Map<string, number>()
  for (const id of owners(new Rendezvous(nodes(['n1', 'n2', 'n3', 'n4', 'n5'])))) counts.set(id, (counts.get(id) ?? 0) + 1)
  t.equal(counts.size, 5)
  for (const [id, n] of counts) t.ok(Math.abs(n - KEYS.length / 5) < KEYS.length / 5 * 0.05, `${id}: ${n} within 5% of a fifth`)
})

t.test('adding a node moves only its share of keys, all of them to the new node', async (t) => {
  const before = owners(new Rendezvous(nodes(['n1', 'n2', 'n3', 'n4'])))
  const after = owners(new Rendezvous(nodes(['n1', 'n2', 'n3', 'n4', 'n5'])))
  let moved = 0
  for (let i = 0; i < KEYS.length; i++) {
    if (before[i] === after[i]) continue
    moved++
    if (after[i] !== 'n5') t.fail(`key ${KEYS[i]} moved from ${before[i]} to ${after[i]}, not to the new node`)
  }
  t.ok(Math.abs(moved - KEYS.length / 5) < KEYS.length / 5 * 0.05, `${moved} keys moved: about a fifth`)
})

t.test('removing a node moves only its keys', async (t) => {
  const before = owners(new Rendezvous(nodes(['n1', 'n2', 'n3'])))
  const after = owners(new Rendezvous(nodes(['n1', 'n3'])))
  for (let i = 0; i < KEYS.length; i++) {
    if (before[i] !== 'n2' && before[i] !== after[i]) t.fail(`key ${KEYS[i]} moved off ${before[i]}, which stayed`)
    if (after[i] === 'n2') t.fail('a removed node still owns a key')
  }
  t.pass('only the removed node\'s keys moved')
})

t.test('the key hash fills both lanes and differs for near keys', async (t) => {
  const a: [number, number] = [0, 0]
  const b: [number, number] = [0, 0]
  hashKey('channel-1', a)
  hashKey('channel-2', b)
  t.not(a[0], b[0])
  t.not(a[1], b[1])
  t.ok(a[0] >= 0 && a[0] <= 0xffffffff && a[1] >= 0 && a[1] <= 0xffffffff)
})
