// The task queue end to end through real processes, on both backends: a seed, app nodes running a
// build that exports handleTask, tasks enqueued by the app's own requests (ctx.enqueue), retries and
// dead letters seen through `admin tasks`, and `kill -9` of the app node in the middle of a task.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { admin, killHard, startAppCluster, writeBuild, type AppCluster } from '../../helpers/app-cluster.js'
import { get, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { send } from '../../helpers/http.js'
import { startRedis } from '../../helpers/redis.js'
import { testDir } from '../../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
let ctx
export function init(c) { ctx = c }
export async function handle(req) {
  if (req.path === '/enqueue') {
    const { name, payload, options } = req.json()
    return { body: JSON.stringify({ id: await ctx.enqueue(name, payload, options) }) }
  }
  if (req.path === '/bad') {
    const codes = []
    for (const bad of [() => ctx.enqueue('has space', 1), () => ctx.enqueue('n', { f: () => 1 }), () => ctx.enqueue('n', 'x'.repeat(70000)),
      () => ctx.enqueue('n', 1, { delay: -5 }), () => ctx.enqueue('n', 1, { attempts: 0 })]) {
      try { await bad(); codes.push('none') } catch (err) { codes.push(err.code + ':' + err.details?.field) }
    }
    return { body: JSON.stringify(codes) }
  }
  return { body: 'pong' }
}
export async function handleTask(task) {
  const { dir } = task.payload
  appendFileSync(join(dir, 'runs.log'), JSON.stringify({ id: task.id, name: task.name, attempt: task.attempt, attempts: task.attempts, enqueuedAt: task.enqueuedAt, at: Date.now() }) + '\\n')
  if (task.name === 'fail') throw new Error('fails on purpose, attempt ' + task.attempt)
  if (task.name === 'flaky' && task.attempt < 2) throw new Error('flaky')
  // The first attempt hangs until its node is killed.
  if (task.name === 'hang' && task.attempt === 1) await new Promise(() => {})
  if (task.name === 'slow') {
    await new Promise((r) => setTimeout(r, 1000))
    appendFileSync(join(dir, 'runs.log'), JSON.stringify({ id: task.id, name: 'slow:done', attempt: task.attempt }) + '\\n')
  }
}
`

interface Run { id: string; name: string; attempt: number; attempts: number; enqueuedAt: number; at: number }

function runsOf(dir: string): Run[] {
  try {
    return readFileSync(join(dir, 'runs.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Run)
  } catch {
    return []
  }
}

async function enqueue(app: StartedNode, name: string, payload: unknown, options?: unknown): Promise<string> {
  const answer = await send({ host: '127.0.0.1', port: app.port, path: '/enqueue', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, JSON.stringify({ name, payload, options }))
  if (answer.status !== 200) throw new Error(`enqueue answered ${answer.status}: ${answer.body}`)
  return (JSON.parse(answer.body) as { id: string }).id
}

async function tasksJson(cluster: AppCluster, extra: string[] = []): Promise<{ backend: string; counts: Record<string, number>; dead?: Record<string, unknown>[] }> {
  const out = await admin(['tasks', '--json', '--seed', cluster.seedAddress, ...extra])
  if (out.code !== 0) throw new Error(`admin tasks failed: ${out.stderr}`)
  return JSON.parse(out.stdout) as { backend: string; counts: Record<string, number>; dead?: Record<string, unknown>[] }
}

const runsFor = (dir: string, id: string) => runsOf(dir).filter((r) => r.id === id)

/** What both backends must show; `redis` adds `--redis <url>` to nodes and admin commands. */
async function scenario(t: Test, redis: string | null, full: boolean): Promise<void> {
  const extra = redis === null ? [] : ['--redis', redis]
  const cluster = await startAppCluster(t, {
    children: 1, threads: 2, 'task-concurrency': 1, 'task-lease': '1s', 'task-backoff': '200ms', ...(redis === null ? {} : { redis }),
  })
  let app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const dir = testDir('espra-task-runs-')

  const ok = await enqueue(app, 'ok', { dir, n: 1 })
  t.match(ok, /^t\d+$/, 'ctx.enqueue resolves with the task id')
  const [run] = await waitFor('ok ran', () => runsFor(dir, ok).length === 1 && runsFor(dir, ok))
  t.match(run, { name: 'ok', attempt: 1, attempts: 3 }, 'handleTask got {id, name, payload, attempt, enqueuedAt}')
  t.ok(run!.enqueuedAt <= run!.at, 'enqueuedAt is when it was enqueued')

  const failing = await enqueue(app, 'fail', { dir }, { attempts: 2 })
  await waitFor('fail is dead', async () => (await tasksJson(cluster, extra)).counts['dead'] === 1, 20_000)
  t.same(runsFor(dir, failing).map((r) => r.attempt), [1, 2], 'ran once per attempt, then stopped')
  const listed = await tasksJson(cluster, [...extra, '--dead'])
  t.equal(listed.backend, redis === null ? 'embedded' : 'redis')
  t.match(listed.dead, [{ id: failing, name: 'fail', attempts: 2, error: 'Error: fails on purpose, attempt 2' }], 'the dead letter with its last error')
  const text = await admin(['tasks', '--dead', '--seed', cluster.seedAddress, ...extra])
  t.match(text.stdout, new RegExp(`ready, .*1 dead[\\s\\S]*${failing}\\s+fail\\s+2\\s`), 'admin tasks --dead as text')

  // kill -9 of the node in the middle of a task: the lease expires and another node runs it again.
  const hang = await enqueue(app, 'hang', { dir })
  await waitFor('hang started', () => runsFor(dir, hang).length === 1)
  t.equal((await get(app.port, '/ping')).body, 'pong', 'a running task leaves the other worker to requests')
  await killHard(app)
  app = await cluster.startApp()
  await cluster.serving(app, 'b1')
  await waitFor('hang ran again', () => runsFor(dir, hang).length === 2, 20_000)
  t.same(runsFor(dir, hang).map((r) => r.attempt), [1, 2], 'not lost: attempt 2 ran on the new node')
  await waitFor('queue empty but the dead letter', async () => {
    const { counts } = await tasksJson(cluster, extra)
    return counts['ready'] === 0 && counts['leased'] === 0 && counts['delayed'] === 0 && counts['dead'] === 1
  })
  t.pass('the killed task was settled once it succeeded')
  if (!full) return

  t.same(JSON.parse((await get(app.port, '/bad')).body), [
    'ESPRA_ERR_TASK_INVALID:name', 'ESPRA_ERR_TASK_INVALID:payload', 'ESPRA_ERR_TASK_INVALID:payload', 'ESPRA_ERR_TASK_INVALID:delay', 'ESPRA_ERR_TASK_INVALID:attempts',
  ], 'bad name, function payload, oversized payload, bad delay, bad attempts: rejected with the field')

  const flaky = await enqueue(app, 'flaky', { dir })
  const later = await enqueue(app, 'ok', { dir }, { delay: 500 })
  await waitFor('flaky and later ran', () => runsFor(dir, flaky).length === 2 && runsFor(dir, later).length === 1, 20_000)
  const [f1, f2] = runsFor(dir, flaky)
  t.same([f1!.attempt, f2!.attempt], [1, 2], 'a failure is retried')
  t.ok(f2!.at - f1!.at >= 200, 'after --task-backoff')
  const [l] = runsFor(dir, later)
  t.ok(l!.at - l!.enqueuedAt >= 500, 'a delayed task does not run before its delay')

  const retried = await admin(['tasks', 'retry', failing, '--seed', cluster.seedAddress, ...extra])
  t.equal(retried.stdout, `${failing}\n`, 'admin tasks retry prints the id')
  await waitFor('retried dead letter ran twice more', () => runsFor(dir, failing).length === 4, 20_000)
  t.same(runsFor(dir, failing).map((r) => r.attempt), [1, 2, 1, 2], 'attempts start over')
  const missing = await admin(['tasks', 'retry', 't99999', '--seed', cluster.seedAddress, ...extra])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /ESPRA_ERR_TASK_NOT_FOUND/)
  await waitFor('the retried task dead again', async () => (await tasksJson(cluster, extra)).counts['dead'] === 1)
  const removed = await admin(['tasks', 'rm', failing, '--seed', cluster.seedAddress, ...extra])
  t.equal(removed.code, 0)
  t.equal(removed.stdout, `dead letter ${failing} deleted\n`, 'admin tasks rm says it was deleted')
  t.match((await tasksJson(cluster, extra)).counts, { dead: 0 }, 'the dead letter is gone')
  const removedAgain = await admin(['tasks', 'rm', failing, '--seed', cluster.seedAddress, ...extra])
  t.equal(removedAgain.code, 1, 'a repeat: no such dead letter')
  t.match(removedAgain.stderr, /ESPRA_ERR_TASK_NOT_FOUND[\s\S]*only a dead letter is deleted/)
  const badId = await admin(['tasks', 'rm', '../t1', '--seed', cluster.seedAddress, ...extra])
  t.equal(badId.code, 2, 'a malformed id is a usage error, as for retry')
  t.match(badId.stderr, /<id>: .*a task id such as t42/, 'refused before anything is reached')
  const status = await admin(['status', '--seed', cluster.seedAddress, ...extra])
  t.match(status.stdout, /tasks \(embedded queue\): \d+ ready, \d+ delayed, \d+ leased, \d+ dead/, 'admin status shows the queue')

  // Drain: the running task finishes, the ones held but not started go back untouched.
  const slow = await enqueue(app, 'slow', { dir })
  const queued = [await enqueue(app, 'ok', { dir }), await enqueue(app, 'ok', { dir })]
  await waitFor('slow started', () => runsFor(dir, slow).length >= 1)
  t.same((await app.stop()).code, 0, 'SIGTERM: the node drains and exits 0')
  t.same(runsOf(dir).filter((r) => r.id === slow).map((r) => r.name), ['slow', 'slow:done'], 'the running task finished during the drain')
  const after = await cluster.startApp()
  await cluster.serving(after, 'b1')
  await waitFor('queued tasks ran', () => queued.every((id) => runsFor(dir, id).length === 1), 20_000)
  t.same(queued.map((id) => runsFor(dir, id)[0]!.attempt), [1, 1], 'tasks given back on drain ran later as attempt 1')
  t.equal(runsFor(dir, slow).length, 2, 'the finished task did not run again')
}

t.test('embedded queue (the seed)', (t) => scenario(t, null, true))

t.test('Redis queue', async (t) => {
  const redis = await startRedis(t)
  await scenario(t, redis.url, false)
})
