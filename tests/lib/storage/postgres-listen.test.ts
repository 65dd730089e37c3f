// The LISTEN session (lib/storage/postgres-listen.ts) and what it is for: two PostgreSQL task queues on one real
// database, as two seeds hold them, whose waiting leases look again only when woken (their polling stretched past the
// wait): a task made ready through one wakes a lease waiting on the other by NOTIFY; the session comes back after the
// server drops it.
import t, { type Test } from 'tap'
import { openPostgres, type Postgres } from '../../../lib/storage/postgres.js'
import { startPostgresListener } from '../../../lib/storage/postgres-listen.js'
import { createPostgresTaskQueue, TASKS_CHANNEL, type PostgresTaskQueue } from '../../../lib/tasks/queue-postgres.js'
import { newTask } from '../../../lib/tasks/task.js'
import { waitFor } from '../../helpers/cluster.js'
import { captureLog } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'

const postgres = await startPostgres(t)
const url = await postgres.createDatabase()
const db: Postgres = await openPostgres({ url, max: 4, log: captureLog('silent').log })
t.teardown(() => db.close())

/** Longer than any wait here: a waiting lease that gets a task was woken, never found it by looking again. */
const NEVER = 10 * 60_000

/** Two "seeds": a queue each with its own instance name and a listener that wakes its waiters on the other's NOTIFY. */
async function twoSeeds(t: Test, queue: string) {
  const log = captureLog('info')
  const heard: string[] = []
  const seeds = ['seed-a', 'seed-b'].map((instance) => {
    const q: PostgresTaskQueue = createPostgresTaskQueue({ db, queue, log: log.log, notifyAs: instance, pollMs: NEVER })
    let listens = 0
    const listener = startPostgresListener({
      url, channel: TASKS_CHANNEL, log: log.log,
      onNotify(payload) {
        heard.push(`${instance} heard ${payload}`)
        const [name, from] = payload.split(' ')
        if (name === queue && from !== instance) q.wakeWaiters()
      },
      onListening: () => listens++,
    })
    t.teardown(async () => {
      await listener.close()
      await q.close()
    })
    return { q, listener, listens: () => listens }
  })
  await waitFor('both listening', () => seeds.every((s) => s.listener.listening) || undefined)
  return { a: seeds[0]!, b: seeds[1]!, heard, log }
}

t.test('an enqueue, a release, a retry after a failure and a swept lease on seed-a each wake a lease waiting on seed-b', async (t) => {
  const { a, b, heard } = await twoSeeds(t, 'wake')
  const waitOnB = () => b.q.lease({ max: 1, leaseMs: 60_000, waitMs: 25_000 })

  let waiting = waitOnB()
  const id = await a.q.enqueue(newTask('first', 1))
  t.same((await waiting).map((x) => x.id), [id], 'enqueue on seed-a: the lease waiting on seed-b has it')
  t.ok(heard.includes('seed-b heard wake seed-a'), 'seed-b heard seed-a\'s NOTIFY')

  const second = await a.q.enqueue(newTask('second', 2))
  const [mine] = await a.q.lease({ max: 1, leaseMs: 60_000 })
  t.equal(mine?.id, second, 'seed-a holds the second task')
  waiting = waitOnB()
  await a.q.settle([{ id: mine!.id, attempt: mine!.attempt, result: 'released' }])
  t.same((await waiting).map((x) => x.id), [second], 'a release on seed-a wakes seed-b')

  const third = await a.q.enqueue({ ...newTask('third', 3), attempts: 3 })
  const [t3] = await b.q.lease({ max: 1, leaseMs: 60_000 })
  t.equal(t3?.id, third)
  waiting = waitOnB()
  await a.q.settle([{ id: t3!.id, attempt: t3!.attempt, result: 'failed', error: 'try again', retryInMs: 0 }])
  t.same((await waiting).map((x) => [x.id, x.attempt]), [[third, 2]], 'a failure retried at once on seed-a wakes seed-b')

  const fourth = await a.q.enqueue({ ...newTask('fourth', 4), attempts: 3 })
  const [t4] = await a.q.lease({ max: 1, leaseMs: 1000 })
  t.equal(t4?.id, fourth)
  waiting = waitOnB()
  // Nobody settles: seed-a's (or seed-b's) sweep finds the lease expired and the task ready again at the front.
  t.same((await waiting).map((x) => [x.id, x.attempt]), [[fourth, 2]], 'a lease swept as expired wakes the waiting lease')
})

t.test('a delayed task notifies nobody; a queue hears no NOTIFY of its own', async (t) => {
  const { a, heard } = await twoSeeds(t, 'quiet')
  await a.q.enqueue({ ...newTask('later', 1), delay: 60_000 })
  // A ready one after it: once seed-b hears that, it would have heard the delayed one before it.
  await a.q.enqueue(newTask('now', 2))
  await waitFor('seed-b hears the ready task', () => heard.includes('seed-b heard quiet seed-a') || undefined)
  t.same(heard.filter((h) => h.startsWith('seed-b')), ['seed-b heard quiet seed-a'], 'one NOTIFY, for the ready task')
})

t.test('the server drops the LISTEN session: it comes back, says so once, and wakes again', async (t) => {
  const { a, b, log } = await twoSeeds(t, 'drop')
  const before = b.listens()
  // Every LISTEN session of this database, as a server restart or an idle-connection killer would.
  await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'espra-node seed listen' AND datname = current_database()`)
  await waitFor('seed-b listens again', () => (b.listens() > before && b.listener.listening) || undefined, 20_000)
  t.ok(log.lines.some((l) => l.msg.startsWith('datastore: LISTEN session lost')), 'the loss is logged')
  t.ok(log.lines.some((l) => l.msg === 'datastore: LISTEN session back'), 'and the recovery')
  const waiting = b.q.lease({ max: 1, leaseMs: 60_000, waitMs: 25_000 })
  const id = await a.q.enqueue(newTask('after', 1))
  t.same((await waiting).map((x) => x.id), [id], 'a lease waiting on seed-b is woken by seed-a again')
})

t.test('close() while connecting or listening ends the session; a bad channel name is refused', async (t) => {
  const l = startPostgresListener({ url, channel: TASKS_CHANNEL, log: captureLog('silent').log, onNotify: () => {} })
  await l.close()
  t.equal(l.listening, false)
  t.throws(() => startPostgresListener({ url, channel: 'x; DROP TABLE y', log: captureLog('silent').log, onNotify: () => {} }))
})
