// One timer for every request's --request-timeout (roles/app/deadline-list.ts), without threads or HTTP: a clock
// the test moves by hand, the list's real timer.
import t from 'tap'
import { DeadlineList, type DeadlineEntry } from '../../../roles/app/deadline-list.js'

interface Entry extends DeadlineEntry {
  readonly name: string
}
const entry = (name: string): Entry => ({ name, deadline: 0, prev: null, next: null })
const tick = (ms = 15) => new Promise((resolve) => setTimeout(resolve, ms))

function setup(timeoutMs: number) {
  let clock = 0
  const expired: string[] = []
  let onExpire: (() => void) | null = null
  const list = new DeadlineList<Entry>(timeoutMs, (e) => {
    expired.push(e.name)
    onExpire?.()
  }, () => clock)
  const expiry = () => new Promise<void>((resolve) => (onExpire = resolve))
  return { list, expired, expiry, set: (now: number) => (clock = now) }
}

t.test('entries past their deadline expire oldest first; removed ones never do', async (t) => {
  const { list, expired, expiry, set } = setup(5)
  const a = entry('a'), b = entry('b'), c = entry('c')
  list.add(a)
  list.add(b)
  list.add(c)
  t.equal(a.deadline, 5, 'the deadline is now + the timeout')
  list.remove(b)
  t.notOk(list.has(b))
  t.ok(list.has(a) && list.has(c))
  set(10)
  const done = expiry()
  await done
  await tick()
  t.same(expired, ['a', 'c'], 'both past their deadline, in order, b not at all')
  t.notOk(list.has(a) || list.has(c), 'expired entries are out of the list')
  list.remove(a)
  t.same(expired, ['a', 'c'], 'removing an expired entry again changes nothing')
})

t.test('a head answered early: the timer waits on for the next deadline, which expires only once due', async (t) => {
  const { list, expired, expiry, set } = setup(5)
  const x = entry('x'), y = entry('y')
  list.add(x)
  set(3)
  list.add(y)
  t.equal(y.deadline, 8)
  list.remove(x)
  // The timer set for x fires; y is not due on the test's clock yet.
  set(6)
  await tick()
  t.same(expired, [], 'nothing expires before its deadline')
  t.ok(list.has(y))
  set(9)
  await expiry()
  t.same(expired, ['y'])
})

t.test('an entry added while others expire gets its own deadline; an empty list holds no timer', async (t) => {
  const { list, expired, expiry, set } = setup(5)
  const first = entry('first'), later = entry('later')
  list.add(first)
  set(5)
  await expiry()
  list.add(later)
  t.equal(later.deadline, 10)
  await tick()
  t.same(expired, ['first'], 'the new entry waits for its own deadline')
  list.remove(later)
  set(100)
  await tick()
  t.same(expired, ['first'], 'removed before its deadline: never expires')
  // Nothing keeps the process alive: the test ends without stop().
})
