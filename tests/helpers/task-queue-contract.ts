/**
 * What every task-queue backend must do (lib/tasks/queue.ts), run against
 * each one: the embedded queue in the seed (in process and over the meta
 * port) and Redis. `make` gives a fresh, empty queue per subtest.
 */
import type { Test } from 'tap'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { decodePayload, newTask, type LeasedTask } from '../../lib/tasks/task.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Leases until `n` tasks came back (each call waits for the next ready one), or 10 s passed. */
async function leaseN(q: TaskQueue, n: number, leaseMs = 10_000): Promise<LeasedTask[]> {
  const got: LeasedTask[] = []
  const end = Date.now() + 10_000
  while (got.length < n && Date.now() < end) got.push(...(await q.lease({ max: n - got.length, leaseMs, waitMs: 1000 })))
  return got
}

export function taskQueueContract(t: Test, make: (t: Test) => Promise<TaskQueue>): void {
  // Each subtest has a queue of its own: they may wait out their leases and delays side by side.
  t.jobs = 5
  t.test('enqueue, lease, ack; oldest first', async (t) => {
    const q = await make(t)
    const a = await q.enqueue(newTask('mail.digest', { user: 7, tags: ['a'], at: new Date(0), bytes: new Uint8Array([1, 2]) }))
    const b = await q.enqueue(newTask('thumbnail', 'b', { attempts: 5 }))
    const c = await q.enqueue(newTask('thumbnail', null))
    t.match(a, /^t\d+$/, 'ids look like t<n>')
    t.not(a, b)
    t.same(await q.counts(), { ready: 3, delayed: 0, leased: 0, dead: 0 })
    const first = await q.lease({ max: 2, leaseMs: 10_000 })
    t.same(first.map((x) => x.id), [a, b], 'leased in enqueue order, at most max')
    const [ta, tb] = first as [LeasedTask, LeasedTask]
    t.match(ta, { name: 'mail.digest', attempt: 1, attempts: 3 })
    t.ok(ta.enqueuedAt > Date.now() - 60_000 && ta.enqueuedAt <= Date.now() + 60_000, 'enqueuedAt is a time')
    const payload = decodePayload(ta.payload) as Record<string, unknown>
    t.same(payload['user'], 7)
    t.same(payload['tags'], ['a'])
    t.equal((payload['at'] as Date).getTime(), 0, 'a Date survives')
    t.same([...(payload['bytes'] as Uint8Array)], [1, 2], 'bytes survive')
    t.match(tb, { name: 'thumbnail', attempts: 5 })
    t.same(await q.counts(), { ready: 1, delayed: 0, leased: 2, dead: 0 })
    t.same(await q.settle([{ id: a, attempt: 1, result: 'done' }, { id: b, attempt: 1, result: 'done' }]), [], 'both acks held their lease')
    t.same(await q.settle([{ id: a, attempt: 1, result: 'done' }]), [a], 'a second ack: the lease is gone')
    t.same((await q.lease({ max: 10, leaseMs: 10_000 })).map((x) => x.id), [c])
    t.same(await q.lease({ max: 10, leaseMs: 10_000 }), [], 'nothing left')
    await q.close()
  })

  t.test('a waiting lease is woken by an enqueue; delayed tasks wait their delay', async (t) => {
    const q = await make(t)
    const waiting = q.lease({ max: 5, leaseMs: 10_000, waitMs: 20_000 })
    await sleep(100)
    const id = await q.enqueue(newTask('wake', 1))
    t.same((await waiting).map((x) => x.id), [id], 'the waiting lease got the new task')

    const later = await q.enqueue(newTask('later', 2, { delay: 1500 }))
    t.same(await q.lease({ max: 5, leaseMs: 10_000 }), [], 'not before its delay')
    t.match(await q.counts(), { ready: 0, delayed: 1 })
    const got = await leaseN(q, 1)
    t.same(got.map((x) => x.id), [later], 'ready once the delay passed')
    await q.close()
  })

  t.test('an expired lease gives the task back (the next attempt); extend keeps it', async (t) => {
    const q = await make(t)
    const id = await q.enqueue(newTask('flaky', {}))
    const [held] = await q.lease({ max: 1, leaseMs: 300 })
    t.equal(held?.attempt, 1)
    const again = await leaseN(q, 1)
    t.same(again.map((x) => [x.id, x.attempt]), [[id, 2]], 'leased again as attempt 2 once the first lease expired')
    t.same(await q.extend([{ id, attempt: 1 }], 10_000), [id], 'the expired lease cannot be extended')
    t.same(await q.settle([{ id, attempt: 1, result: 'done' }]), [id], 'nor acked')
    t.same(await q.extend([{ id, attempt: 2 }], 10_000), [], 'the live lease extends')
    t.same(await q.settle([{ id, attempt: 2, result: 'done' }]), [])

    const kept = await q.enqueue(newTask('long', {}))
    // Leased for 2 s, extended at 0.5 s by 4 s: at 2.5 s it is past its first deadline and still held.
    await q.lease({ max: 1, leaseMs: 2000 })
    await sleep(500)
    t.same(await q.extend([{ id: kept, attempt: 1 }], 4000), [])
    await sleep(2000)
    t.same(await q.lease({ max: 1, leaseMs: 1000 }), [], 'an extended lease is still held past its first deadline')
    t.match(await q.counts(), { leased: 1 })
    await q.close()
  })

  t.test('failures retry after their backoff, then land in the dead letters; retry brings one back', async (t) => {
    const q = await make(t)
    const id = await q.enqueue(newTask('fails', { n: 1 }, { attempts: 2 }))
    const [one] = await q.lease({ max: 1, leaseMs: 10_000 })
    t.same(await q.settle([{ id, attempt: one!.attempt, result: 'failed', error: 'first failure', retryInMs: 1500 }]), [])
    t.match(await q.counts(), { ready: 0, delayed: 1, leased: 0, dead: 0 }, 'waiting for its retry')
    t.same(await q.lease({ max: 1, leaseMs: 10_000 }), [], 'not before the backoff')
    const [two] = await leaseN(q, 1)
    t.equal(two?.attempt, 2, 'the retry is attempt 2')
    t.same(await q.settle([{ id, attempt: 2, result: 'failed', error: 'second failure', retryInMs: 300 }]), [])
    t.same(await q.counts(), { ready: 0, delayed: 0, leased: 0, dead: 1 }, 'the last attempt failed: dead letter')
    const page = await q.deadLetters()
    t.equal(page.tasks.length, 1)
    t.match(page.tasks[0], { id, name: 'fails', attempts: 2, error: 'second failure' })
    t.ok(page.tasks[0]!.failedAt > 0 && page.tasks[0]!.payloadBytes > 0)
    t.equal(page.next, null)

    // A lost lease on the last attempt is a dead letter too.
    const lost = await q.enqueue(newTask('dies', {}, { attempts: 1 }))
    await q.lease({ max: 1, leaseMs: 200 })
    await sleep(400)
    t.match(await q.counts(), { dead: 2, leased: 0 }, 'an expired last lease: dead')
    const both = await q.deadLetters({ limit: 1 })
    t.same(both.tasks.map((x) => x.id), [id], 'paged in id order')
    t.equal(both.next, id)
    const rest = await q.deadLetters({ after: both.next!, limit: 1 })
    t.same(rest.tasks.map((x) => x.id), [lost])
    t.match(rest.tasks[0]!.error, /lease expired/)

    t.equal(await q.retry(id), true, 'retry a dead letter')
    t.equal(await q.retry(id), false, 'it is no longer dead')
    t.equal(await q.retry('t999999'), false, 'unknown id')
    const [back] = await q.lease({ max: 1, leaseMs: 10_000 })
    t.match(back, { id, attempt: 1, attempts: 2 }, 'attempts start over')
    t.same(decodePayload(back!.payload), { n: 1 }, 'same payload')
    t.match(await q.counts(), { dead: 1, leased: 1 })
    await q.close()
  })

  t.test('deleteDead removes a dead letter and nothing else', async (t) => {
    const q = await make(t)
    const dead = await q.enqueue(newTask('dies', { n: 1 }, { attempts: 1 }))
    const [d] = await q.lease({ max: 1, leaseMs: 10_000 })
    t.same(await q.settle([{ id: dead, attempt: d!.attempt, result: 'failed', error: 'gone for good', retryInMs: 0 }]), [])
    const leased = await q.enqueue(newTask('held', 2))
    t.same((await q.lease({ max: 1, leaseMs: 10_000 })).map((x) => x.id), [leased])
    const ready = await q.enqueue(newTask('waits', 3))
    const before = { ready: 1, delayed: 0, leased: 1, dead: 1 }
    t.same(await q.counts(), before)

    t.equal(await q.deleteDead(ready), false, 'a ready task is no dead letter')
    t.equal(await q.deleteDead(leased), false, 'a leased task is no dead letter')
    t.equal(await q.deleteDead('t999999'), false, 'unknown id')
    t.same(await q.counts(), before, 'nothing changed')

    t.equal(await q.deleteDead(dead), true, 'the dead letter is deleted')
    t.same(await q.counts(), { ready: 1, delayed: 0, leased: 1, dead: 0 }, 'gone from the counts')
    t.same((await q.deadLetters()).tasks, [], 'gone from the dead letters')
    t.equal(await q.deleteDead(dead), false, 'a repeat answers false')
    t.equal(await q.retry(dead), false, 'and it cannot be retried')

    t.same(await q.settle([{ id: leased, attempt: 1, result: 'done' }]), [], 'the leased task kept its lease')
    t.same((await q.lease({ max: 5, leaseMs: 10_000 })).map((x) => x.id), [ready], 'the ready task is still there, alone')
    await q.close()
  })

  t.test('a released task comes back first and its attempt does not count', async (t) => {
    const q = await make(t)
    const a = await q.enqueue(newTask('a', 1))
    const b = await q.enqueue(newTask('b', 2))
    const [x] = await q.lease({ max: 1, leaseMs: 10_000 })
    t.equal(x?.id, a)
    t.same(await q.settle([{ id: a, attempt: 1, result: 'released' }]), [])
    const again = await q.lease({ max: 2, leaseMs: 10_000 })
    t.same(again.map((y) => [y.id, y.attempt]), [[a, 1], [b, 1]], 'released task first, attempt 1 again')
    await q.close()
  })
}
