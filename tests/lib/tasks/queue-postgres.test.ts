// The PostgreSQL task queue against a real server started here: the shared contract in process and
// over the meta port (a seed with --datastore postgres), then what only PostgreSQL has.
import t from 'tap'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { createPostgresTaskQueue } from '../../../lib/tasks/queue-postgres.js'
import { openPostgres, type Postgres } from '../../../lib/storage/postgres.js'
import { newOpId } from '../../../lib/storage/op-id.js'
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

// Op ids in one statement (docs/postgres.md, "Op ids"): the claim, the op and its record in one statement; a repeat reads the record.
t.test('op ids: a repeated settle answers the same "lost", concurrent sends apply once, a lease repeat reads its rows again', async (t) => {
  const queue = `once${++runs}`
  const q = createPostgresTaskQueue({ db, queue, log: captureLog('silent').log })
  const rows = async (opId: string) => (await db.query<{ op_id: string }>('SELECT op_id FROM espra_ops WHERE op_id LIKE $1 ORDER BY op_id', [`${opId}%`])).rows.map((r) => r.op_id)
  const [a, b, c] = await Promise.all([1, 2, 3].map((i) => q.enqueue(newTask('n', i))))
  const leaseId = newOpId()
  const leased = await q.lease({ max: 3, leaseMs: 60_000 }, () => true, leaseId)
  t.same(leased.map((x) => x.id), [a, b, c])
  t.same(await rows(leaseId), [leaseId, `${leaseId}:answer`], 'the lease is recorded beside its claim')

  // a done, a's duplicate and a stale attempt of b are lost; c released.
  const results = [{ id: a, attempt: 1, result: 'done' }, { id: a, attempt: 1, result: 'done' }, { id: b, attempt: 9, result: 'done' }, { id: c, attempt: 1, result: 'released' }] as const
  const settleId = newOpId()
  const [one, two] = await Promise.all([q.settle(results, settleId), q.settle(results, settleId)])
  t.same(one, [a, b], 'the duplicate and the stale attempt are lost')
  t.same(two, one, 'the concurrent send answers the same')
  t.same(await q.settle(results, settleId), one, 'and so does a later repeat')
  t.same(await rows(settleId), [settleId, `${settleId}:answer`], 'something was lost: the settled ids are recorded')
  t.same(await q.counts(), { ready: 1, delayed: 0, leased: 1, dead: 0 }, 'applied once: c released once (attempt not counted twice), b still leased')

  const doneId = newOpId()
  t.same(await q.settle([{ id: b, attempt: 1, result: 'done' }], doneId), [])
  t.same(await q.settle([{ id: b, attempt: 1, result: 'done' }], doneId), [], 'a repeated done is not lost')
  t.same(await rows(doneId), [doneId], 'nothing lost: the claim alone is the record')

  const again = await q.lease({ max: 3, leaseMs: 60_000 }, () => true, leaseId)
  t.same(again.map((x) => [x.id, x.attempt]), [[c, 1]], 'the lease repeat answers its tasks not finished since (a and b are done), with their recorded attempt')
  t.equal((await q.lease({ max: 3, leaseMs: 60_000 })).length, 1, 'c is still ready: the repeat leased nothing')

  const empty = newOpId()
  t.same(await q.lease({ max: 3, leaseMs: 60_000 }, () => true, empty), [], 'nothing ready')
  t.same(await rows(empty), [], 'a lease that found nothing leaves no record')

  await t.rejects(q.lease({ max: 1, leaseMs: 60_000 }, () => true, settleId), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'opId' } }, 'a settle\'s op id is refused for a lease')

  // Recorded by a seed of the previous version (in a transaction, as a msgpack answer under the plain op name): answered as recorded.
  const old = newOpId()
  await db.query(`INSERT INTO espra_ops (op_id, op, answer, expires_at) VALUES ($1, $2, $3, 1e15)`, [old, `${queue}.settle`, Buffer.from([0x91, 0xa2, 0x74, 0x31])])
  t.same(await q.settle([{ id: c, attempt: 2, result: 'done' }], old), ['t1'], 'the older record\'s answer')
  t.same(await q.counts(), { ready: 0, delayed: 0, leased: 1, dead: 0 }, 'and nothing applied')
  await q.close()
})
