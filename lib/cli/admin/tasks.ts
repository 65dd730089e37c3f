/**
 * `espra-node admin tasks`: the task queue's counts and dead letters,
 * `admin tasks retry <id>` and `admin tasks rm <id>` (deletes a dead letter). The queue is the seed's (over the meta port:
 * embedded, or PostgreSQL when the seeds run on it; the seed's counts answer
 * says which), or Redis with `--redis` / ESPRA_REDIS (the URL the app nodes
 * run with). The output names the real backend.
 */
import { redisUrl } from '../../core/options-tasks.js'
import { createError } from '../../core/errors.js'
import { createLogger } from '../../core/log.js'
import type { TaskQueue } from '../../tasks/queue.js'
import { createMetaTaskQueue } from '../../tasks/queue-meta.js'
import { checkId, type DeadTask } from '../../tasks/task.js'
import { connect, type ConnectOptions } from './cli.js'
import { formatTaskCounts } from './format.js'

export interface TaskOptions extends ConnectOptions {
  /** The Redis URL of a Redis-backed queue (else ESPRA_REDIS, else the seed's embedded queue). */
  redis?: string
}

/** The queue the options name, and how to let go of it. */
export async function openQueue(opts: TaskOptions, env: NodeJS.ProcessEnv = process.env): Promise<{ queue: TaskQueue; close(): Promise<void> }> {
  const url = opts.redis ?? (env['ESPRA_REDIS'] || undefined)
  if (url !== undefined) {
    let checked: string
    try {
      checked = redisUrl(url)
    } catch (reason) {
      throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--redis', reason: String(reason) })
    }
    const { createRedisTaskQueue } = await import('../../tasks/queue-redis.js')
    const queue = createRedisTaskQueue({ url: checked, log: createLogger('silent', { role: 'admin-cli', node: 'cli' }) })
    return { queue, close: () => queue.close() }
  }
  const client = await connect(opts)
  return { queue: createMetaTaskQueue(client), close: () => client.close() }
}

function formatDead(tasks: readonly DeadTask[]): string {
  if (tasks.length === 0) return '(no dead letters)'
  const rows = [['ID', 'NAME', 'ATTEMPTS', 'FAILED', 'ERROR'], ...tasks.map((t) => [
    t.id, t.name, String(t.attempts), new Date(t.failedAt).toISOString(), t.error.replace(/\s+/g, ' ').slice(0, 200),
  ])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')
}

export interface TaskSummary {
  backend: string
  counts: { ready: number; delayed: number; leased: number; dead: number }
  /** With `dead`: the first `limit` dead letters. */
  dead?: DeadTask[]
}

/** The queue's counts and, when asked, its dead letters (`admin tasks`, `GET /api/tasks`). */
export async function readTasks(queue: TaskQueue, opts: { dead: boolean; limit: number }): Promise<TaskSummary> {
  const counts = await queue.counts()
  const dead = opts.dead ? (await queue.deadLetters({ limit: opts.limit })).tasks : undefined
  return { backend: queue.backend, counts, ...(dead ? { dead } : {}) }
}

/** Puts dead letter `id` back in the queue; `ESPRA_ERR_TASK_NOT_FOUND` when there is none. */
export async function retryTask(queue: TaskQueue, id: string): Promise<{ id: string }> {
  if (!(await queue.retry(id))) throw createError('ESPRA_ERR_TASK_NOT_FOUND', { id, hint: 'admin tasks --dead lists them' })
  return { id }
}

/** Deletes dead letter `id`; `ESPRA_ERR_TASK_NOT_FOUND` when there is none (a ready or leased task is never deleted). */
export async function deleteDeadTask(queue: TaskQueue, id: string): Promise<{ id: string; deleted: true }> {
  if (!(await queue.deleteDead(id))) throw createError('ESPRA_ERR_TASK_NOT_FOUND', { id, hint: 'admin tasks --dead lists them; only a dead letter is deleted' })
  return { id, deleted: true }
}

export async function adminTasks(opts: TaskOptions & { dead?: boolean; json?: boolean; limit?: string }): Promise<void> {
  const limit = Number(opts.limit ?? 100)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--limit', reason: 'must be an integer from 1 to 1000' })
  const { queue, close } = await openQueue(opts)
  try {
    const summary = await readTasks(queue, { dead: opts.dead === true, limit })
    const { counts, dead } = summary
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`)
      return
    }
    process.stdout.write(`${formatTaskCounts(summary.backend, counts)}\n`)
    if (dead) process.stdout.write(`\n${formatDead(dead)}\n`)
  } finally {
    await close()
  }
}

export async function adminTasksRetry(id: string, opts: TaskOptions): Promise<void> {
  checkIdOption(id)
  const { queue, close } = await openQueue(opts)
  try {
    await retryTask(queue, id)
    process.stdout.write(`${id}\n`)
  } finally {
    await close()
  }
}

export async function adminTasksRm(id: string, opts: TaskOptions): Promise<void> {
  checkIdOption(id)
  const { queue, close } = await openQueue(opts)
  try {
    await deleteDeadTask(queue, id)
    process.stdout.write(`dead letter ${id} deleted\n`)
  } finally {
    await close()
  }
}

/** A task id given on the command line, checked before anything is reached. */
function checkIdOption(id: string): void {
  try {
    checkId(id)
  } catch (err) {
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '<id>', reason: (err as Error).message })
  }
}
