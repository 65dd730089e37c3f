/** Task-queue options: the backend (`--redis`) and how app nodes run tasks (docs/app-api.md, "Tasks"). */
import { constant, durationIn, integer, option, type OptionArea } from './config-parsers.js'
import { InvalidValue } from './errors.js'

/** `redis://` or `rediss://` with a host; the password (if any) never shows in `config check`. Throws a sentence saying what is allowed. */
export function redisUrl(raw: unknown): string {
  if (typeof raw !== 'string') throw new InvalidValue('must be a redis:// or rediss:// URL')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new InvalidValue('must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0')
  }
  if ((url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') throw new InvalidValue('must be a redis:// or rediss:// URL with a host, e.g. redis://127.0.0.1:6379/0')
  if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d{1,2}$/.test(url.pathname)) throw new InvalidValue('may name a database number only, e.g. redis://host:6379/2')
  return raw
}

export const TASK_OPTIONS = [
  option({
    key: 'redis', flag: '--redis <url>', env: 'ESPRA_REDIS', defaultText: '(none: the seed\'s embedded queue)',
    doc: 'task queue in Redis, redis://[user:password@]host:port[/db] (rediss:// for TLS), for app nodes and `admin tasks`; every app node of a cluster must name the same one',
    details: 'task queue in Redis, `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), for app nodes and `admin tasks`; every app node of a cluster must name the same one (the password is masked in `config check`)',
    default: constant(null), parse: redisUrl,
  }),
  option({
    key: 'taskConcurrency', flag: '--task-concurrency <n>', env: 'ESPRA_TASK_CONCURRENCY', defaultText: 'half of --threads, at least 1',
    doc: 'app: tasks a child runs at once; a task takes a worker only when no request is waiting (0: this node runs no tasks)',
    default: (c) => Math.max(1, Math.floor(Number(c['threads']) / 2)), parse: integer(0, 256),
  }),
  option({
    key: 'taskTimeout', flag: '--task-timeout <duration>', env: 'ESPRA_TASK_TIMEOUT', defaultText: '5m',
    doc: 'app: a handleTask still running after this fails (its worker is terminated and replaced) and is retried',
    parse: durationIn(10, 24 * 3_600_000),
  }),
  option({
    key: 'taskLease', flag: '--task-lease <duration>', env: 'ESPRA_TASK_LEASE', defaultText: '30s',
    doc: 'app: how long a taken task stays reserved; held tasks are renewed every third of it, so a node that dies gives its tasks back after at most this',
    parse: durationIn(300, 3_600_000),
  }),
  option({
    key: 'taskBackoff', flag: '--task-backoff <duration>', env: 'ESPRA_TASK_BACKOFF', defaultText: '1s',
    doc: 'app: delay before a failed task\'s first retry; it doubles with every failed attempt, at most 1h',
    parse: durationIn(0, 3_600_000),
  }),
] as const

export const TASK_AREA: OptionArea<typeof TASK_OPTIONS> = { heading: 'Task queue', options: TASK_OPTIONS }
