/**
 * One PostgreSQL session that LISTENs on a channel, for seeds that share a
 * database: a task made ready on one seed wakes the leases waiting on the
 * others (lib/tasks/queue-postgres.ts, docs/postgres.md "Several seeds").
 *
 * LISTEN needs a session of its own (a pooled connection is recycled when
 * idle, and behind PgBouncer in transaction mode LISTEN does not work at
 * all), so this holds one `pg.Client` outside the pool and opens it again
 * after it drops (backoff 250 ms to 5 s). Notifications sent while it was
 * down are lost: `onListening` runs after every (re)connect so the caller
 * can look again. Nothing depends on it for correctness: waiting leases
 * still look every 250 ms without it. The loss and the recovery are logged
 * once each.
 */
import pg from 'pg'
import type { Logger } from '../core/log.js'
import { postgresWhere } from './postgres.js'

const RETRY_FIRST_MS = 250
const RETRY_MAX_MS = 5000

export interface PostgresListenerOptions {
  readonly url: string
  /** A plain identifier (`[a-z_]+`): it is written into `LISTEN` as it is. */
  readonly channel: string
  readonly log: Logger
  onNotify(payload: string): void
  /** After every successful LISTEN (the first and each after a drop): whatever was notified meanwhile was missed. */
  onListening?(): void
}

export interface PostgresListener {
  /** True while the session listens. */
  readonly listening: boolean
  close(): Promise<void>
}

export function startPostgresListener(opts: PostgresListenerOptions): PostgresListener {
  if (!/^[a-z_]{1,63}$/.test(opts.channel)) throw new Error(`bad LISTEN channel ${opts.channel}`)
  const where = postgresWhere(opts.url)
  let closed = false
  let listening = false
  let lostLogged = false
  let client: pg.Client | null = null
  let retryTimer: NodeJS.Timeout | null = null
  let failures = 0

  function retry(err: unknown): void {
    listening = false
    if (!lostLogged && !closed) {
      lostLogged = true
      opts.log.warn({ postgres: where, channel: opts.channel, err: (err as Error)?.message?.split('\n')[0] }, 'datastore: LISTEN session lost; waiting leases look every 250 ms until it is back')
    }
    const c = client
    client = null
    c?.removeAllListeners('notification')
    void c?.end().catch(() => {})
    if (closed || retryTimer !== null) return
    const step = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(failures++, 5))
    retryTimer = setTimeout(() => {
      retryTimer = null
      void connect()
    }, step)
    retryTimer.unref()
  }

  async function connect(): Promise<void> {
    if (closed) return
    const c = new pg.Client({ connectionString: opts.url, connectionTimeoutMillis: 5000, keepAlive: true, application_name: 'espra-node seed listen' })
    client = c
    // Without a listener an error on this idle session would crash the process.
    c.on('error', (err) => {
      if (client === c) retry(err)
    })
    c.on('end', () => {
      if (client === c) retry(new Error('connection ended'))
    })
    c.on('notification', (n) => {
      if (n.channel === opts.channel) opts.onNotify(n.payload ?? '')
    })
    try {
      await c.connect()
      await c.query(`LISTEN ${opts.channel}`)
    } catch (err) {
      if (client === c) retry(err)
      return
    }
    if (closed || client !== c) return
    listening = true
    failures = 0
    if (lostLogged) opts.log.info({ postgres: where, channel: opts.channel }, 'datastore: LISTEN session back')
    lostLogged = false
    opts.onListening?.()
  }
  void connect()

  return {
    get listening() {
      return listening
    },
    async close() {
      if (closed) return
      closed = true
      listening = false
      if (retryTimer !== null) clearTimeout(retryTimer)
      const c = client
      client = null
      await c?.end().catch(() => {})
    },
  }
}
