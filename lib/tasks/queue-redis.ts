/**
 * The task queue in Redis (`--redis redis://…`): the reliable-queue pattern.
 *
 * Keys, under `espra:tasks:` (one queue per Redis database: give clusters
 * that share a server their own `/<db>` in the URL):
 * - `ready`: list of task ids; enqueue pushes on the left, consumers take
 *   from the right with LMOVE into `leased` (the in-progress list), so a
 *   task is always in one of the two, never in flight between them;
 * - `leased` + `deadlines` (sorted set id → lease deadline, ms): a lease
 *   whose deadline passes is requeued (or, after the last attempt, goes
 *   dead) by whichever consumer next leases, counts or settles;
 * - `delayed`: sorted set id → time it may run (delays and retries);
 * - `dead`: sorted set of dead letters, scored by id number;
 * - `task:<id>`: hash of name, payload bytes, attempts used and allowed,
 *   enqueue time, last error and failure time;
 * - `seq`: the id counter; `wake`: a pub/sub channel told when `ready` goes
 *   from empty to not empty, so idle consumers do not poll.
 *
 * Every step that moves a task runs as one Lua script (atomic; the clock is
 * the Redis server's TIME, so nodes' clocks do not matter). Plain Redis or a
 * primary with replicas; not Redis Cluster (the scripts touch keys they
 * compute).
 */
import { Redis, type RedisOptions } from 'ioredis'
import { createError } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { DEFAULT_DEAD_LIMIT, type LeaseOptions, type TaskQueue } from './queue.js'
import { redisReason, redisWhere } from './redis-status.js'
import { idNumber, type DeadTask, type LeasedTask, type LeaseRef, type NewTask, type Settlement, type TaskCounts } from './task.js'

export const REDIS_PREFIX = 'espra:tasks:'
const KEY_NAMES = ['ready', 'leased', 'deadlines', 'delayed', 'dead', 'seq'] as const
const LEASE_EXPIRED = 'lease expired: the node running it stopped, or lost the queue, before it finished'

// Shared head of every script: the server clock, the key helpers, and the sweep that
// makes due delayed tasks ready and requeues (or kills) tasks whose lease expired.
const HEAD = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1]
local function tkey(id) return P .. 'task:' .. id end
local function wake() redis.call('PUBLISH', P .. 'wake', '1') end
local function sweep()
  local moved = false
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[4], id)
    redis.call('LPUSH', KEYS[1], id)
    moved = true
  end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[3], id)
    redis.call('LREM', KEYS[2], 1, id)
    local f = redis.call('HMGET', tkey(id), 'a', 'm')
    if f[1] then
      redis.call('HSET', tkey(id), 'err', ${JSON.stringify(LEASE_EXPIRED)})
      if tonumber(f[1]) >= tonumber(f[2]) then
        redis.call('HSET', tkey(id), 'f', now)
        redis.call('ZADD', KEYS[5], tonumber(string.sub(id, 2)), id)
      else
        redis.call('RPUSH', KEYS[1], id)
        moved = true
      end
    end
  end
  if moved then wake() end
end
`

const SCRIPTS = {
  // ARGV: prefix, name, payload, attempts, delay
  espraTaskEnqueue: `${HEAD}
local id = 't' .. redis.call('INCR', KEYS[6])
redis.call('HSET', tkey(id), 'n', ARGV[2], 'p', ARGV[3], 'a', 0, 'm', ARGV[4], 'e', now)
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('ZADD', KEYS[4], now + delay, id)
elseif redis.call('LPUSH', KEYS[1], id) == 1 then
  wake()
end
return id`,
  // ARGV: prefix, max, leaseMs → {id, attempt, name, payload, attempts, enqueuedAt, ...}, next due, next deadline, now
  espraTaskLease: `${HEAD}
sweep()
local out = {}
local deadline = now + tonumber(ARGV[3])
for i = 1, tonumber(ARGV[2]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  if redis.call('EXISTS', tkey(id)) == 1 then
    local a = redis.call('HINCRBY', tkey(id), 'a', 1)
    redis.call('ZADD', KEYS[3], deadline, id)
    local f = redis.call('HMGET', tkey(id), 'n', 'p', 'm', 'e')
    out[#out + 1] = id
    out[#out + 1] = a
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = f[4]
  else
    redis.call('LREM', KEYS[2], 1, id)
  end
end
local due = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local lease = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {out, due[2] or '', lease[2] or '', tostring(now)}`,
  // ARGV: prefix, leaseMs, then id, attempt pairs → lost ids
  espraTaskExtend: `${HEAD}
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[3], id) == false or tonumber(redis.call('HGET', tkey(id), 'a')) ~= tonumber(ARGV[i + 1]) then
    lost[#lost + 1] = id
  else
    redis.call('ZADD', KEYS[3], 'XX', now + tonumber(ARGV[2]), id)
  end
end
return lost`,
  // ARGV: prefix, then id, attempt, d|f|r, error, retryInMs per result → lost ids
  espraTaskSettle: `${HEAD}
local lost = {}
local woke = false
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  local attempt = tonumber(ARGV[i + 1])
  local kind = ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[3], id) == false or tonumber(redis.call('HGET', tkey(id), 'a')) ~= attempt then
    lost[#lost + 1] = id
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('LREM', KEYS[2], 1, id)
    if kind == 'd' then
      redis.call('DEL', tkey(id))
    elseif kind == 'r' then
      redis.call('HINCRBY', tkey(id), 'a', -1)
      redis.call('RPUSH', KEYS[1], id)
      woke = true
    else
      redis.call('HSET', tkey(id), 'err', ARGV[i + 3])
      if attempt >= tonumber(redis.call('HGET', tkey(id), 'm')) then
        redis.call('HSET', tkey(id), 'f', now)
        redis.call('ZADD', KEYS[5], tonumber(string.sub(id, 2)), id)
      elseif tonumber(ARGV[i + 4]) > 0 then
        redis.call('ZADD', KEYS[4], now + tonumber(ARGV[i + 4]), id)
      else
        redis.call('RPUSH', KEYS[1], id)
        woke = true
      end
    end
  end
end
if woke then wake() end
return lost`,
  // ARGV: prefix → ready, delayed, leased, dead
  espraTaskCounts: `${HEAD}
sweep()
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[5])}`,
  // ARGV: prefix, id → 1 when it was a dead letter
  espraTaskRetry: `${HEAD}
if redis.call('ZREM', KEYS[5], ARGV[2]) == 0 then return 0 end
redis.call('HSET', tkey(ARGV[2]), 'a', 0)
redis.call('HDEL', tkey(ARGV[2]), 'f')
if redis.call('LPUSH', KEYS[1], ARGV[2]) == 1 then wake() end
return 1`,
  // ARGV: prefix, id → 1 when it was a dead letter (now gone with its hash)
  espraTaskDeleteDead: `${HEAD}
if redis.call('ZREM', KEYS[5], ARGV[2]) == 0 then return 0 end
redis.call('DEL', tkey(ARGV[2]))
return 1`,
} as const

type ScriptName = keyof typeof SCRIPTS
type Reply = Buffer | number | null | Reply[]
type ScriptCall = (...args: (string | number | Buffer)[]) => Promise<Reply>

export interface RedisTaskQueueOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  readonly url: string
  readonly log: Logger
  /** Key prefix (tests and benches keep runs apart). */
  readonly prefix?: string
}

const str = (r: Reply | undefined): string => (Buffer.isBuffer(r) ? r.toString('utf8') : String(r ?? ''))
const num = (r: Reply | undefined): number => Number(str(r))

/** Connects (lazily retrying while Redis is away) and loads the scripts. */
export function createRedisTaskQueue(opts: RedisTaskQueueOptions): TaskQueue {
  const prefix = opts.prefix ?? REDIS_PREFIX
  const keys = KEY_NAMES.map((k) => prefix + k)
  const options: RedisOptions = {
    // A command fails after one reconnection attempt instead of hanging: callers see ESPRA_ERR_TASK_UNAVAILABLE.
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  }
  const redis = new Redis(opts.url, options)
  const where = redisWhere(opts.url)
  let down = false
  /** The last connection error: the reason a command failed is the connection's, not the command's "max retries". */
  let lastError: unknown = null
  redis.on('error', (err: Error) => {
    lastError = err
    if (down) return
    down = true
    opts.log.warn({ err: err.message }, 'task queue: Redis unreachable; retrying')
  })
  redis.on('ready', () => {
    lastError = null
    if (down) opts.log.info('task queue: Redis reachable again')
    down = false
  })
  for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: keys.length, lua })

  async function run(name: ScriptName, ...args: (string | number | Buffer)[]): Promise<Reply> {
    const fn = (redis as unknown as Record<string, ScriptCall>)[`${name}Buffer`]!
    try {
      return await fn.call(redis, ...keys, prefix, ...args)
    } catch (err) {
      throw unavailable(err, where, lastError)
    }
  }

  // Idle consumers wait on the `wake` channel (one subscriber connection, made on first wait).
  let sub: Redis | null = null
  const wakers = new Set<() => void>()
  function subscribe(): void {
    if (sub !== null) return
    sub = redis.duplicate()
    sub.on('error', () => {})
    sub.on('message', () => {
      for (const w of [...wakers]) w()
    })
    void sub.subscribe(prefix + 'wake').catch(() => {})
  }
  let closed = false

  async function leaseOnce(max: number, leaseMs: number): Promise<{ tasks: LeasedTask[]; nextAt: number; now: number }> {
    const reply = (await run('espraTaskLease', max, leaseMs)) as Reply[]
    const flat = reply[0] as Reply[]
    const tasks: LeasedTask[] = []
    for (let i = 0; i < flat.length; i += 6) {
      const payload = flat[i + 3]
      tasks.push({
        id: str(flat[i]), attempt: num(flat[i + 1]), name: str(flat[i + 2]),
        payload: Buffer.isBuffer(payload) ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength) : new Uint8Array(0),
        attempts: num(flat[i + 4]), enqueuedAt: num(flat[i + 5]),
      })
    }
    const times = [str(reply[1]), str(reply[2])].filter((s) => s !== '').map(Number)
    return { tasks, nextAt: times.length > 0 ? Math.min(...times) : Infinity, now: num(reply[3]) }
  }

  return {
    backend: 'redis',
    async enqueue(task: NewTask) {
      return str(await run('espraTaskEnqueue', task.name, Buffer.from(task.payload.buffer, task.payload.byteOffset, task.payload.byteLength), task.attempts, task.delay))
    },
    async lease({ max, leaseMs, waitMs = 0 }: LeaseOptions) {
      const first = await leaseOnce(max, leaseMs)
      if (first.tasks.length > 0 || waitMs <= 0 || closed) return first.tasks
      // Nothing ready: sleep until woken, until the next delayed task or lease deadline is due, or waitMs.
      subscribe()
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          wakers.delete(done)
          resolve()
        }
        const timer = setTimeout(done, Math.max(1, Math.min(waitMs, first.nextAt - first.now + 1)))
        wakers.add(done)
      })
      return closed ? [] : (await leaseOnce(max, leaseMs)).tasks
    },
    async extend(leases: readonly LeaseRef[], leaseMs: number) {
      if (leases.length === 0) return []
      const reply = (await run('espraTaskExtend', leaseMs, ...leases.flatMap((l) => [l.id, l.attempt]))) as Reply[]
      return reply.map(str)
    },
    async settle(results: readonly Settlement[]) {
      if (results.length === 0) return []
      const args = results.flatMap((r) => [r.id, r.attempt, r.result[0]!, r.result === 'failed' ? r.error : '', r.result === 'failed' ? r.retryInMs : 0])
      return ((await run('espraTaskSettle', ...args)) as Reply[]).map(str)
    },
    async counts(): Promise<TaskCounts> {
      const [ready, delayed, leased, dead] = ((await run('espraTaskCounts')) as Reply[]).map(num) as [number, number, number, number]
      return { ready, delayed, leased, dead }
    },
    async deadLetters(options: { after?: string; limit?: number } = {}) {
      const limit = options.limit ?? DEFAULT_DEAD_LIMIT
      const after = options.after === undefined ? '-inf' : `(${idNumber(options.after)}`
      let ids: string[]
      try {
        ids = await redis.zrangebyscore(prefix + 'dead', after, '+inf', 'LIMIT', 0, limit + 1)
        const page = ids.slice(0, limit)
        const rows = await Promise.all(page.map((id) => Promise.all([
          redis.hmget(prefix + 'task:' + id, 'n', 'a', 'e', 'f', 'err'),
          redis.hstrlen(prefix + 'task:' + id, 'p'),
        ])))
        const tasks: DeadTask[] = page.map((id, i) => {
          const [[n, a, e, f, err], bytes] = rows[i]!
          return { id, name: n ?? '', attempts: Number(a ?? 0), enqueuedAt: Number(e ?? 0), failedAt: Number(f ?? 0), error: err ?? '', payloadBytes: bytes }
        })
        return { tasks, next: ids.length > limit ? page.at(-1)! : null }
      } catch (err) {
        throw unavailable(err, where, lastError)
      }
    },
    async retry(id: string) {
      return num(await run('espraTaskRetry', id)) === 1
    },
    async deleteDead(id: string) {
      return num(await run('espraTaskDeleteDead', id)) === 1
    },
    async close() {
      closed = true
      for (const w of [...wakers]) w()
      sub?.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

/**
 * A reply error is a bug or a refusal; anything else means Redis is out of
 * reach. The message is ours (apps show it to their users): where Redis is
 * and why in a few words, never the client library's text (a refusal keeps
 * Redis's own reply, e.g. `OOM command not allowed`).
 */
function unavailable(err: unknown, where: string, connectionError: unknown): Error {
  const e = err as Error
  if (e?.name === 'ReplyError') return createError('ESPRA_ERR_TASK_FAILED', { queue: `Redis at ${where}`, reason: e.message, redis: where })
  return createError('ESPRA_ERR_TASK_UNAVAILABLE', { reason: `cannot reach Redis at ${where} (${redisReason(connectionError ?? err)})`, redis: where })
}
