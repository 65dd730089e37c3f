// The seed's embedded task queue: the shared contract over the meta port (a real seed),
// every tasks.* body checked, and durability across a restart.
import t from 'tap'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import { MAX_PAYLOAD_BYTES, newTask } from '../../lib/tasks/task.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { client, startTestSeed } from '../helpers/seed.js'
import { taskQueueContract } from '../helpers/task-queue-contract.js'
import { testDir } from '../helpers/temp-dir.js'

const freshDir = () => testDir('espra-tasks-')

// The contract runs over the meta port: the ops in front of the queue and the queue itself (the restart test below opens it in process).
t.test('over the meta port', async (t) => {
  taskQueueContract(t, async (t) => {
    const { port } = await startTestSeed(t)
    const c = client(t, port)
    await c.ready
    return createMetaTaskQueue(c)
  })
})

t.test('every tasks.* body is checked; the connection stays up', async (t) => {
  const { port } = await startTestSeed(t)
  const c = client(t, port)
  await c.ready
  const bad: [string, unknown, string][] = [
    ['tasks.enqueue', 'x', 'body'],
    ['tasks.enqueue', { name: 'has space', payload: new Uint8Array(1), delay: 0, attempts: 3 }, 'name'],
    ['tasks.enqueue', { name: 'ok', payload: 'not bytes', delay: 0, attempts: 3 }, 'payload'],
    ['tasks.enqueue', { name: 'ok', payload: new Uint8Array(MAX_PAYLOAD_BYTES + 1) }, 'payload'],
    ['tasks.enqueue', { name: 'ok', payload: new Uint8Array(1), delay: -1 }, 'delay'],
    ['tasks.enqueue', { name: 'ok', payload: new Uint8Array(1), attempts: 0 }, 'attempts'],
    ['tasks.lease', { max: 0, leaseMs: 1000 }, 'max'],
    ['tasks.lease', { max: 1, leaseMs: 5 }, 'leaseMs'],
    ['tasks.lease', { max: 1, leaseMs: 1000, waitMs: 3_600_000 }, 'waitMs'],
    ['tasks.extend', { leases: [{ id: 'x1', attempt: 1 }], leaseMs: 1000 }, 'leases[0].id'],
    ['tasks.extend', { leases: [{ id: 't1', attempt: 0 }], leaseMs: 1000 }, 'leases[0].attempt'],
    ['tasks.settle', { results: [{ id: 't1', attempt: 1, result: 'maybe' }] }, 'results[0].result'],
    ['tasks.settle', { results: [{ id: 't1', attempt: 1, result: 'failed', error: 'e' }] }, 'results[0].retryInMs'],
    ['tasks.settle', { results: 'none' }, 'results'],
    ['tasks.dead', { limit: 5000 }, 'limit'],
    ['tasks.dead', { after: 7 }, 'after'],
    ['tasks.retry', { id: '../etc' }, 'id'],
    ['tasks.deleteDead', { id: 't1; DROP TABLE espra_tasks' }, 'id'],
    ['tasks.deleteDead', { id: 42 }, 'id'],
    ['tasks.deleteDead', {}, 'id'],
    ['mailq.deleteDead', { id: 'x1' }, 'id'],
  ]
  for (const [op, body, field] of bad) {
    await t.rejects(c.request(op, body), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, `${op} ${JSON.stringify(body).slice(0, 60)}: ${field}`)
  }
  await t.rejects(c.request('tasks.retry', { id: 't12345' }), { code: 'ESPRA_ERR_TASK_NOT_FOUND' }, 'retry of no dead letter')
  t.same(await c.request('tasks.deleteDead', { id: 't12345' }), { deleted: false }, 'deleting no dead letter answers false')
  t.match(await c.request('ping', {}), { now: Number }, 'the connection is still up')
})

t.test('records survive a restart: ready, delayed, dead; a lease does not (the task is ready again)', async (t) => {
  const dir = freshDir()
  const q = await openEmbeddedTaskQueue({ dir })
  const ready = await q.enqueue(newTask('r', 1))
  const leased = await q.enqueue(newTask('l', 2))
  const later = await q.enqueue(newTask('d', 3, { delay: 3_600_000 }))
  const dead = await q.enqueue(newTask('x', 4, { attempts: 1 }))
  const held = await q.lease({ max: 3, leaseMs: 60_000 })
  t.same(held.map((x) => x.id), [ready, leased, dead])
  await q.settle([{ id: ready, attempt: 1, result: 'released' }, { id: dead, attempt: 1, result: 'failed', error: 'gave up', retryInMs: 0 }])
  t.same(await q.counts(), { ready: 1, delayed: 1, leased: 1, dead: 1 })
  await q.close()
  await t.rejects(q.counts(), { code: 'ESPRA_ERR_TASK_UNAVAILABLE' }, 'a closed queue says so')

  const again = await openEmbeddedTaskQueue({ dir })
  t.same(await again.counts(), { ready: 2, delayed: 1, leased: 0, dead: 1 }, 'the leased task is ready again')
  t.same((await again.lease({ max: 5, leaseMs: 60_000 })).map((x) => x.id), [ready, leased], 'in id order')
  t.match((await again.deadLetters()).tasks, [{ id: dead, error: 'gave up' }])
  const next = await again.enqueue(newTask('n', 5))
  t.ok(Number(next.slice(1)) > Number(later.slice(1)), 'ids keep growing across restarts')
  await again.close()
})
