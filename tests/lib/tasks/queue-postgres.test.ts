// The PostgreSQL task queue against a real server started here: the shared contract in process and
// over the meta port (a seed with --datastore postgres), then what only PostgreSQL has.
import t from 'tap'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { createPostgresTaskQueue } from '../../../lib/tasks/queue-postgres.js'
import { openPostgres, type Postgres } from '../../../lib/storage/postgres.js'
import { newTask } from '../../../lib/tasks/task.js'
import { captureLog } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'
import { client, startTestSeed } from '../../helpers/seed.js'
import { taskQueueContract } from '../../helpers/task-queue-contract.js'

const postgres = await startPostgres(t)
const db: Postgres = await openPostgres({ url: await postgres.createDatabase(), max: 10, log: captureLog('silent').log })
t.teardown(() => db.close())
let runs = 0

t.test('in process', async (t) => {
  taskQueueContract(t, async () => createPostgresTaskQueue({ db, queue: `q${++runs}`, log: captureLog('silent').log }))
})

t.test('over the meta port: a seed with --datastore postgres', async (t) => {
  taskQueueContract(t, async (t) => {
    const { port } = await startTestSeed(t, { datastore: await postgres.createDatabase(), tasks: 'postgres' })
    const c = client(t, port)
    await c.ready
    return createMetaTaskQueue(c)
  })
})

t.test('two consumers never hold the same task (FOR UPDATE SKIP LOCKED)', async (t) => {
  const queue = `race${++runs}`
  const a = createPostgresTaskQueue({ db, queue, log: captureLog('silent').log })
  const b = createPostgresTaskQueue({ db, queue, log: captureLog('silent').log })
  await Promise.all(Array.from({ length: 300 }, (_, i) => a.enqueue(newTask('n', i))))
  const leases = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? a : b).lease({ max: 60, leaseMs: 10_000 })))
  const ids = leases.flat().map((task) => task.id)
  t.equal(ids.length, 300, 'every task leased once')
  t.equal(new Set(ids).size, 300, 'no task twice')
  t.same(await a.counts(), { ready: 0, delayed: 0, leased: 300, dead: 0 })
  await Promise.all([a.close(), b.close()])
})

t.test('queues of one table are separate; a lease stops at maxBytes and gives the rest back in order', async (t) => {
  const one = createPostgresTaskQueue({ db, queue: `sep${++runs}`, log: captureLog('silent').log })
  const two = createPostgresTaskQueue({ db, queue: `sep${++runs}`, log: captureLog('silent').log })
  const ids = [] as string[]
  for (let i = 0; i < 4; i++) ids.push(await one.enqueue(newTask('big', 'x'.repeat(1000))))
  t.same(await two.lease({ max: 10, leaseMs: 10_000 }), [], 'the other queue sees none')
  const first = await one.lease({ max: 10, leaseMs: 10_000, maxBytes: 2500 })
  t.same(first.map((x) => x.id), ids.slice(0, 2), 'what fits')
  t.same(await one.counts(), { ready: 2, delayed: 0, leased: 2, dead: 0 }, 'the rest are ready again')
  t.same((await one.lease({ max: 10, leaseMs: 10_000 })).map((x) => [x.id, x.attempt]), ids.slice(2).map((id) => [id, 1]), 'in order, their attempt not counted')
  await Promise.all([one.close(), two.close()])
})

t.test('the table holds no finished work: done deletes the row', async (t) => {
  const queue = `gone${++runs}`
  const q = createPostgresTaskQueue({ db, queue, log: captureLog('silent').log })
  const id = await q.enqueue(newTask('n', 1))
  const [x] = await q.lease({ max: 1, leaseMs: 10_000 })
  await q.settle([{ id, attempt: x!.attempt, result: 'done' }])
  t.same((await db.query('SELECT count(*)::int AS n FROM espra_tasks WHERE queue = $1', [queue])).rows, [{ n: 0 }])
  await q.close()
})
