/**
 * Task queue bench: N no-op tasks enqueued from this process (a window of
 * W requests in flight), then drained by one real App node whose build's
 * `handleTask` returns at once; the embedded backend (the seed's queue,
 * reached over the meta port) and the Redis backend (a redis-server started
 * here on a free port, no persistence) in turn. Prints enqueue and drain
 * rates in tasks/s (target: drain >= 5,000/s with Redis). Drain time runs
 * from the first task leased to the queue being empty (counts polled every
 * 50 ms). Needs `npm run build` and Debian's `redis-server`.
 *
 *   npx tsx bench/tasks.ts [--tasks 100000] [--window 512] [--children 2] [--threads 2] [--task-concurrency 2]
 */
import { spawn } from 'node:child_process'
import { arg, sleep } from './args.js'
import { createLogger } from '../lib/core/log.js'
import type { TaskQueue } from '../lib/tasks/queue.js'
import { createMetaTaskQueue } from '../lib/tasks/queue-meta.js'
import { createRedisTaskQueue } from '../lib/tasks/queue-redis.js'
import { newTask } from '../lib/tasks/task.js'
import { createMetaClient } from '../lib/transport/meta-client.js'
import { adopt, BENCH_SECRET, freePorts, guard, killAll } from './live-common.js'
import { pushBuild, startRegistered, startSeed, waitBuild } from './nodes.js'

const TASKS = arg('tasks', 100_000)
const WINDOW = arg('window', 512)
const CHILDREN = arg('children', 2)
const THREADS = arg('threads', 2)
const CONCURRENCY = arg('task-concurrency', 2)

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

/** Polls the counts until nothing is ready, leased or delayed; resolves the drain rate from the first lease on. */
async function drainRate(queue: TaskQueue): Promise<number> {
  let first = 0
  for (;;) {
    const c = await queue.counts()
    const left = c.ready + c.leased + c.delayed
    const now = performance.now()
    if (first === 0 && left < TASKS) first = now
    if (left === 0) {
      if (c.dead > 0) throw new Error(`${c.dead} tasks died`)
      return TASKS / ((now - first) / 1000)
    }
    await sleep(50)
  }
}

async function run(backend: 'embedded' | 'redis'): Promise<{ enqueue: number; drain: number }> {
  const redis = backend === 'redis' ? await startRedis() : null
  const seed = await startSeed()
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
  const drain = await drained
  await queue.close()
  await client.close()
  killAll()
  return { enqueue, drain }
}

guard(15 * 60_000)
const rows: string[] = []
for (const backend of ['embedded', 'redis'] as const) {
  const { enqueue, drain } = await run(backend)
  rows.push(`| ${backend} | ${Math.round(enqueue).toLocaleString('en-US')} | ${Math.round(drain).toLocaleString('en-US')} |`)
  console.log(`${backend}: enqueue ${Math.round(enqueue)} tasks/s, drain ${Math.round(drain)} tasks/s`)
}
console.log(`\n${TASKS.toLocaleString('en-US')} no-op tasks, one app node (--children ${CHILDREN} --threads ${THREADS} --task-concurrency ${CONCURRENCY}), enqueue window ${WINDOW}\n`)
console.log('| backend | enqueue tasks/s | drain tasks/s |\n|---|---|---|')
for (const r of rows) console.log(r)
process.exit(0)
