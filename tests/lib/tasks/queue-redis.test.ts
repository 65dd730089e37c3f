// The Redis task queue against a real redis-server started here: the shared contract, then what only Redis has.
import t from 'tap'
import { createRedisTaskQueue } from '../../../lib/tasks/queue-redis.js'
import { newTask } from '../../../lib/tasks/task.js'
import { captureLog } from '../../helpers/meta.js'
import { startRedis } from '../../helpers/redis.js'
import { freePort } from '../../helpers/cluster.js'
import { taskQueueContract } from '../../helpers/task-queue-contract.js'

const redis = await startRedis(t)
let runs = 0

taskQueueContract(t, async () => createRedisTaskQueue({ url: redis.url, log: captureLog('silent').log, prefix: `test${++runs}:` }))

t.test('two consumers never hold the same task (LMOVE into the in-progress list)', async (t) => {
  const prefix = `race${++runs}:`
  const a = createRedisTaskQueue({ url: redis.url, log: captureLog('silent').log, prefix })
  const b = createRedisTaskQueue({ url: redis.url, log: captureLog('silent').log, prefix })
  await Promise.all(Array.from({ length: 200 }, (_, i) => a.enqueue(newTask('n', i))))
  const [x, y] = await Promise.all([a.lease({ max: 150, leaseMs: 10_000 }), b.lease({ max: 150, leaseMs: 10_000 })])
  const ids = [...x!, ...y!].map((task) => task.id)
  t.equal(ids.length, 200, 'every task leased once')
  t.equal(new Set(ids).size, 200, 'no task twice')
  t.same(await a.counts(), { ready: 0, delayed: 0, leased: 200, dead: 0 })
  await Promise.all([a.close(), b.close()])
})

t.test('Redis out of reach: ESPRA_ERR_TASK_UNAVAILABLE', async (t) => {
  const { log, lines } = captureLog('warn')
  const port = await freePort()
  const q = createRedisTaskQueue({ url: `redis://user:pw@127.0.0.1:${port}/2`, log })
  const err = await q.enqueue(newTask('n', 1)).then(() => null, (e: Error) => e)
  t.match(err, { code: 'ESPRA_ERR_TASK_UNAVAILABLE', message: `the task queue is unavailable: cannot reach Redis at 127.0.0.1:${port} (connection refused)` }, 'in our words')
  t.notMatch(err!.message, /maxRetriesPerRequest|Reached the max retries|ECONNREFUSED|pw/, 'no client-library text, no password')
  t.ok(lines.some((l) => /Redis unreachable/.test(l.msg)), 'logged once as a warning')
  await q.close()
})
