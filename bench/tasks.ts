/**
 * Task queue bench: N no-op tasks enqueued from this process (a window of
 * W requests in flight), then drained by one real App node whose build's
 * `handleTask` returns at once; the embedded backend (the seed's queue,
 * reached over the meta port), the PostgreSQL backend (the seed with
 * `--datastore postgres://…` on a server started here: tests/helpers/postgres.ts,
 * also over the meta port) and the Redis backend (a redis-server started
 * here on a free port, no persistence) in turn. Prints enqueue and drain
 * rates in tasks/s (targets: drain >= 5,000/s; PostgreSQL >= 0.5x Redis) and
 * the misses (tasks that ended as dead letters instead of done). Drain time
 * runs from the first task leased to the queue being empty (counts polled
 * every 250 ms: in PostgreSQL a count scans the queue's rows, about 45 ms per
 * 50,000 ready tasks here, so polling faster would measure the poll). Needs `npm run build`, Debian's `redis-server` and `postgresql`.
 *
 *   npx tsx bench/tasks.ts [--tasks 100000] [--window 512] [--children 2] [--threads 2] [--task-concurrency 2]
 */
import { spawn } from 'node:child_process'
import { arg, helpFrom, sleep } from './args.js'
import { createLogger } from '../lib/core/log.js'
import type { TaskQueue } from '../lib/tasks/queue.js'
import { createMetaTaskQueue } from '../lib/tasks/queue-meta.js'
import { createRedisTaskQueue } from '../lib/tasks/queue-redis.js'
import { newTask } from '../lib/tasks/task.js'
import { createMetaClient } from '../lib/transport/meta-client.js'
import { startPostgres } from '../tests/helpers/postgres.js'
import { adopt, BENCH_SECRET, freePorts, guard, killAll } from './live-common.js'
import { pushBuild, startRegistered, startSeed, waitBuild } from './nodes.js'

helpFrom(import.meta.url)

const TASKS = arg('tasks', 100_000)
const WINDOW = arg('window', 512)
const CHILDREN = arg('children', 2)
const THREADS = arg('threads', 2)
const CONCURRENCY = arg('task-concurrency', 2)
const POLL_MS = 250

const APP = `
export function handle() { return 'task bench' }
export function handleTask() {}
`

const log = createLogger('silent', { role: 'bench', node: 'bench' })

async function startRedis(): Promise<string> {
  const port = await freePorts()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
  adopt(proc)
  await new Promise<void>((resolve, reject) => {
    proc.once('error', (err) => reject(new Error(`redis-server: ${err.message} (apt-get install redis-server)`)))
    proc.stdout!.on('data', (d: Buffer) => d.toString().includes('Ready to accept connections') && resolve())
  })
  return `redis://127.0.0.1:${port}`
}

/** Enqueues TASKS tasks with WINDOW in flight; resolves the rate. */
async function enqueueAll(queue: TaskQueue): Promise<number> {
  const started = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (next < TASKS) {
      const i = next++
      await queue.enqueue(newTask('noop', { i }))
    }
  }))
  return TASKS / ((performance.now() - started) / 1000)
}

/** Polls the counts until nothing is ready, leased or delayed; resolves the drain rate from the first lease on, and the dead letters. */
async function drainRate(queue: TaskQueue): Promise<{ rate: number; missed: number }> {
  let first = 0
  for (;;) {
    const c = await queue.counts()
    const left = c.ready + c.leased + c.delayed
    const now = performance.now()
    if (first === 0 && left < TASKS) first = now
    if (left === 0) return { rate: TASKS / ((now - first) / 1000), missed: c.dead }
    await sleep(POLL_MS)
  }
}

type Backend = 'embedded' | 'postgres' | 'redis'

/** Where the seed's time went: task ops it served (espra_seed_task_op_duration_seconds), count and mean ms each. */
async function seedTaskOps(metricsPort: number): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  const ops = new Map<string, { count: number; sum: number }>()
  for (const line of text.split('\n')) {
    const m = /^espra_seed_task_op_duration_seconds_(count|sum)\{(.*)\} (\S+)$/.exec(line)
    if (!m || !m[2]!.includes('queue="tasks"')) continue
    m[2] = /op="(\w+)"/.exec(m[2]!)?.[1] ?? '?'
    const o = ops.get(m[2]!) ?? { count: 0, sum: 0 }
    o[m[1] as 'count' | 'sum'] = Number(m[3])
    ops.set(m[2]!, o)
  }
  return [...ops].map(([op, o]) => `${op} ${o.count} (mean ${((o.sum * 1000) / Math.max(1, o.count)).toFixed(2)} ms)`).join(', ')
}

async function run(backend: Backend): Promise<{ enqueue: number; drain: number; missed: number }> {
  const redis = backend === 'redis' ? await startRedis() : null
  const postgres = backend === 'postgres' ? await startPostgres({ teardown: (fn) => void process.once('exit', () => void fn()) }) : null
  const seed = await startSeed(postgres === null ? {} : { datastore: await postgres.createDatabase('bench') })
  const client = createMetaClient({ seeds: [seed.address], secret: BENCH_SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log, reconnect: false })
  await client.ready
  const queue = redis === null ? createMetaTaskQueue(client) : createRedisTaskQueue({ url: redis, log })
  const enqueue = await enqueueAll(queue)
  const counts = await queue.counts()
  if (counts.ready !== TASKS) throw new Error(`expected ${TASKS} ready, counted ${counts.ready}`)
  const app = await startRegistered('app', seed, {
    children: CHILDREN, threads: THREADS, 'task-concurrency': CONCURRENCY, ...(redis === null ? {} : { redis }),
  })
  const build = await pushBuild(seed, { 'server/index.js': APP }, `task bench ${backend}`)
  const drained = drainRate(queue)
  await waitBuild(app, build)
  const { rate: drain, missed } = await drained
  // Seed-side time per op (a waiting lease counts its wait): where a drain's time goes.
  if (redis === null) console.log(`${backend}: seed served ${await seedTaskOps(seed.node.port + 1000)}`)
  await queue.close()
  await client.close()
  killAll()
  await postgres?.stop()
  return { enqueue, drain, missed }
}

guard(15 * 60_000)
const rows: string[] = []
const drained = new Map<Backend, number>()
for (const backend of ['embedded', 'postgres', 'redis'] as const) {
  const { enqueue, drain, missed } = await run(backend)
  drained.set(backend, drain)
  rows.push(`| ${backend} | ${Math.round(enqueue).toLocaleString('en-US')} | ${Math.round(drain).toLocaleString('en-US')} | ${missed} |`)
  console.log(`${backend}: enqueue ${Math.round(enqueue)} tasks/s, drain ${Math.round(drain)} tasks/s, ${missed} missed`)
}
console.log(`\n${TASKS.toLocaleString('en-US')} no-op tasks, one app node (--children ${CHILDREN} --threads ${THREADS} --task-concurrency ${CONCURRENCY}), enqueue window ${WINDOW}\n`)
console.log('| backend | enqueue tasks/s | drain tasks/s | missed (dead letters) |\n|---|---|---|---|')
for (const r of rows) console.log(r)
console.log(`\nPostgreSQL drain / Redis drain: ${(drained.get('postgres')! / drained.get('redis')!).toFixed(2)}`)
process.exit(0)
