/**
 * Redis, said in our words: what ioredis reports when Redis is out of reach
 * ("Reached the max retries per request limit (which is 1). Refer to
 * "maxRetriesPerRequest" option…", "connect ECONNREFUSED …", "Connection is
 * closed.") turned into one short reason an operator or an app's user can
 * read, and a probe that tells a node parent when Redis goes down and comes
 * back (the app node's health is `degraded` meanwhile).
 */
import { Redis } from 'ioredis'
import type { Logger } from '../core/log.js'

/** `host:port` of a Redis URL, without user or password. */
export function redisWhere(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname || '127.0.0.1'}:${u.port || '6379'}`
  } catch {
    return 'the configured address'
  }
}

/** Why Redis could not be used, in a few of our own words (never the client library's). */
export function redisReason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; name?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : ''
  const message = typeof e?.message === 'string' ? e.message : String(err)
  if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(message)) return 'connection refused'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /ENOTFOUND|EAI_AGAIN/.test(message)) return 'host not found'
  if (code === 'ETIMEDOUT' || /ETIMEDOUT|timed? ?out/i.test(message)) return 'timed out'
  if (code === 'ECONNRESET' || /ECONNRESET/.test(message)) return 'connection reset'
  if (/NOAUTH|WRONGPASS|invalid password|AUTH/i.test(message)) return 'authentication failed'
  if (/Connection is closed|isn't writeable|EPIPE/.test(message)) return 'connection lost'
  if (/LOADING/.test(message)) return 'Redis is still loading its data'
  if (/READONLY/.test(message)) return 'Redis is a read-only replica'
  return 'no connection'
}

export interface RedisProbe {
  close(): Promise<void>
}

const PROBE_EVERY_MS = 1000
const PROBE_TIMEOUT_MS = 1000

/**
 * Pings Redis every second over a connection of its own; calls
 * `onChange('down: cannot reach Redis at host:port (<reason>)')` when it stops
 * answering and `onChange(null)` when it answers again.
 */
export function startRedisProbe(url: string, log: Logger, onChange: (down: string | null) => void): RedisProbe {
  const where = redisWhere(url)
  const redis = new Redis(url, {
    maxRetriesPerRequest: 0,
    connectTimeout: PROBE_TIMEOUT_MS,
    enableOfflineQueue: false,
    retryStrategy: () => PROBE_EVERY_MS,
  })
  let lastError: unknown = null
  redis.on('error', (err: unknown) => (lastError = err))
  let down: string | null = null
  let closed = false

  async function probe(): Promise<void> {
    let now: string | null
    try {
      await Promise.race([
        redis.ping(),
        new Promise((_, reject) => setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), PROBE_TIMEOUT_MS).unref()),
      ])
      now = null
    } catch (err) {
      now = `down: cannot reach Redis at ${where} (${redisReason(lastError ?? err)})`
    }
    if (closed || now === down) return
    down = now
    if (now === null) log.info({ redis: where }, 'Redis reachable again: node health ok')
    else log.warn({ redis: where, err: (lastError as Error | null)?.message }, `Redis ${now}: node health degraded`)
    onChange(now)
  }

  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    void probe().finally(() => (running = false))
  }, PROBE_EVERY_MS)
  timer.unref()
  return {
    async close() {
      closed = true
      clearInterval(timer)
      redis.disconnect()
    },
  }
}
