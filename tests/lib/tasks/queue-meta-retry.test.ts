// The meta task queue's rule for a dropped link, against a real seed on a real PostgreSQL (its leases are rows, so
// they outlive the seed) that goes away and comes back on the same port: extend, counts and dead are sent again
// within the window, and so are enqueue, lease, settle and retry with one op id each (applied once); a window of 0
// fails at once with ESPRA_ERR_TASK_UNAVAILABLE. `counted` passes every request through to the real meta client and counts it.
import t, { type Test } from 'tap'
import type { EspraError } from '../../../lib/core/errors.js'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { newTask } from '../../../lib/tasks/task.js'
import { createMetaClient, type MetaClient } from '../../../lib/transport/meta-client.js'
import { startSeed } from '../../../seed/seed.js'
import { captureLog, SECRET } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'
import { startTestSeed, type TestSeed } from '../../helpers/seed.js'

const postgres = await startPostgres(t)

function counted(link: MetaClient): { link: Pick<MetaClient, 'request'>; sent: Map<string, number> } {
  const sent = new Map<string, number>()
  return {
    sent,
    link: {
      request<T>(op: string, body: unknown, timeoutMs?: number): Promise<T> {
        sent.set(op, (sent.get(op) ?? 0) + 1)
        return link.request<T>(op, body, timeoutMs)
      },
    },
  }
}

async function seedAndLink(t: Test): Promise<{ first: TestSeed; link: MetaClient }> {
  const first = await startTestSeed(t, { datastore: await postgres.createDatabase(), tasks: 'postgres' })
  const link = createMetaClient({
    seeds: [`127.0.0.1:${first.port}`], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024,
    log: captureLog('silent').log, reconnect: true, backoffMaxMs: 200,
  })
  t.teardown(() => link.destroy())
  await link.ready
  return { first, link }
}

const linkDown = async (link: MetaClient) => {
  while (link.connected) await new Promise((resolve) => setImmediate(resolve))
}

t.test('extend, counts and dead sent while the seed is away are answered once it is back; the lease held all along', async (t) => {
  const { first, link } = await seedAndLink(t)
  const { link: passing, sent } = counted(link)
  const queue = createMetaTaskQueue(passing)
  t.teardown(() => queue.close())
  await queue.enqueue(newTask('held', 1))
  const [task] = await queue.lease({ max: 1, leaseMs: 60_000 })
  first.seed.destroy()
  await linkDown(link)

  const renewed = queue.extend([{ id: task!.id, attempt: task!.attempt }], 60_000)
  const counts = queue.counts()
  const dead = queue.deadLetters()
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok((sent.get('tasks.extend') ?? 0) > 1, `extend was sent again while the seed was away (${sent.get('tasks.extend')} sends)`)
  const again = await startSeed({ config: { ...first.config, metaPort: first.port }, log: captureLog('silent').log })
  t.teardown(() => again.destroy())

  t.same(await renewed, [], 'the renewal is answered: the lease (a row) is still held')
  t.same(await counts, { ready: 0, delayed: 0, leased: 1, dead: 0 }, 'counts is answered')
  t.same((await dead).tasks, [], 'and dead letters')
  t.same(await queue.settle([{ id: task!.id, attempt: task!.attempt, result: 'done' }]), [], 'the task settles on the seed that came back')
})

t.test('enqueue, lease, settle and retry sent while the seed is away are sent again and applied once it is back; a window of 0 fails at once', async (t) => {
  const { first, link } = await seedAndLink(t)
  const { link: passing, sent } = counted(link)
  const queue = createMetaTaskQueue(passing)
  const fast = createMetaTaskQueue(passing, 'tasks', { retryWindowMs: 0 })
  t.teardown(() => Promise.all([queue.close(), fast.close()]))
  await queue.enqueue(newTask('held', 1))
  const [task] = await queue.lease({ max: 1, leaseMs: 60_000 })
  const deadId = await queue.enqueue(newTask('dies', 1, { attempts: 1 }))
  const [dies] = await queue.lease({ max: 1, leaseMs: 60_000 })
  t.same(await queue.settle([{ id: deadId, attempt: dies!.attempt, result: 'failed', error: 'x', retryInMs: 0 }]), [], 'a dead letter')
  first.seed.destroy()
  await linkDown(link)
  sent.clear()

  const code = (p: Promise<unknown>) => p.then(() => 'resolved', (err: EspraError) => err.code)
  t.equal(await code(fast.enqueue(newTask('n', 1))), 'ESPRA_ERR_TASK_UNAVAILABLE', 'enqueue with a window of 0')
  t.equal(await code(fast.extend([{ id: task!.id, attempt: task!.attempt }], 60_000)), 'ESPRA_ERR_TASK_UNAVAILABLE', 'extend with a window of 0')
  t.same(Object.fromEntries(sent), { 'tasks.enqueue': 1, 'tasks.extend': 1 }, 'each sent once')
  sent.clear()

  const enqueued = queue.enqueue(newTask('while-away', 1))
  const settled = queue.settle([{ id: task!.id, attempt: task!.attempt, result: 'done' }])
  const retried = queue.retry(deadId)
  await new Promise((resolve) => setTimeout(resolve, 300))
  for (const op of ['tasks.enqueue', 'tasks.settle', 'tasks.retry']) t.ok((sent.get(op) ?? 0) > 1, `${op} was sent again while the seed was away (${sent.get(op)} sends)`)
  const again = await startSeed({ config: { ...first.config, metaPort: first.port }, log: captureLog('silent').log })
  t.teardown(() => again.destroy())
  const id = await enqueued
  t.same(await settled, [], 'the settle is answered: the lease was still held')
  t.equal(await retried, true, 'the retry is answered')
  const leased = await queue.lease({ max: 10, leaseMs: 60_000 })
  t.same(leased.map((x) => x.id).sort(), [deadId, id].sort(), 'one task enqueued while away, the dead letter ready again; the settled one gone')
  t.same(await queue.counts(), { ready: 0, delayed: 0, leased: 2, dead: 0 })
})

t.test('closing the queue ends a renewal that waits for the link', async (t) => {
  const { first, link } = await seedAndLink(t)
  const queue = createMetaTaskQueue(link)
  await queue.enqueue(newTask('held', 1))
  const [task] = await queue.lease({ max: 1, leaseMs: 60_000 })
  first.seed.destroy()
  await linkDown(link)
  const renewed = queue.extend([{ id: task!.id, attempt: task!.attempt }], 60_000).then(() => 'resolved', (err: EspraError) => err.code)
  await new Promise((resolve) => setTimeout(resolve, 200))
  await queue.close()
  t.equal(await renewed, 'ESPRA_ERR_TASK_UNAVAILABLE', 'the waiting renewal fails once the queue is closed')
})
