/**
 * What the seed keeps durably, by `--datastore` and `--tasks`: the
 * datastore, the app's task queue and the outbound mail queue. Embedded:
 * LMDB files under `<data-dir>/seed`. PostgreSQL: one pool shared by the
 * datastore and both queues (docs/postgres.md). Only the chosen backend's
 * modules are loaded. Closed in the reverse order of opening.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { NodeConfig } from '../lib/core/config.js'
import type { Logger } from '../lib/core/log.js'
import { isPostgres, maskPostgresUrl } from '../lib/core/options-datastore.js'
import { isExpiredRow } from '../lib/storage/app-tables.js'
import type { Datastore } from '../lib/storage/datastore.js'
import type { LeaseOptions, TaskQueue } from '../lib/tasks/queue.js'
import type { LeasedTask, NewTask, Settlement } from '../lib/tasks/task.js'
import { createOpMemory, storeRemembers, type OpOnce } from './op-memory.js'

/**
 * A queue the seed serves over the meta port: a waiting lease learns whether
 * its caller is still there; `opId`, for a queue that remembers op ids
 * itself (PostgreSQL; the others ignore it and the seed remembers them in
 * memory: `SeedStores.once`).
 */
export interface SeedTaskQueue extends TaskQueue {
  enqueue(task: NewTask, opId?: string): Promise<string>
  lease(options: LeaseOptions, alive?: () => boolean, opId?: string): Promise<LeasedTask[]>
  settle(results: readonly Settlement[], opId?: string): Promise<string[]>
  retry(id: string, opId?: string): Promise<boolean>
}

export interface SeedStores {
  readonly datastore: Datastore
  readonly appTasks: SeedTaskQueue
  readonly mailQueue: SeedTaskQueue
  /** How the meta ops apply an op id once, per store: in the store's own transaction (PostgreSQL), else in this process's memory. */
  readonly once: { readonly datastore: OpOnce; readonly tasks: OpOnce }
  /** `embedded` or the masked PostgreSQL URL, for logs. */
  readonly where: string
  /** The PostgreSQL pool of the datastore and queues; null when embedded. */
  readonly postgres: import('../lib/storage/postgres.js').Postgres | null
  /** One connection of its own for the leader lease, so a renewal never waits behind datastore ops in the pool; null when embedded. */
  readonly leaseDb: import('../lib/storage/postgres.js').Postgres | null
  /** A datastore `put` fenced by the leader lease (PostgresDatastore.putFenced); null when embedded (one seed, always leading). */
  readonly putFenced: import('../lib/storage/datastore-postgres.js').PostgresDatastore['putFenced'] | null
  /** Deletes app-table rows past their TTL (they already read as absent); how many went. */
  removeExpiredRows(now: number): Promise<number>
  close(): Promise<void>
}

/** Undoes what opened when a later step fails, newest first. */
async function unwind(closers: (() => Promise<unknown>)[], err: unknown): Promise<never> {
  for (const close of closers.reverse()) await close().catch(() => {})
  throw err
}

export async function openSeedStores(config: NodeConfig, log: Logger): Promise<SeedStores> {
  const dir = join(config.dataDir, 'seed')
  const closers: (() => Promise<unknown>)[] = []
  try {
    let datastore: Datastore
    let removeExpiredRows: (now: number) => Promise<number>
    let postgres: import('../lib/storage/postgres.js').Postgres | null = null
    let leaseDb: import('../lib/storage/postgres.js').Postgres | null = null
    let putFenced: SeedStores['putFenced'] = null
    if (isPostgres(config.datastore)) {
      const { openPostgres } = await import('../lib/storage/postgres.js')
      const { createPostgresDatastore } = await import('../lib/storage/datastore-postgres.js')
      postgres = await openPostgres({ url: config.datastore, max: config.datastorePool, log })
      closers.push(postgres.close)
      // Migrations already ran on the pool: this second open finds the schema current.
      leaseDb = await openPostgres({ url: config.datastore, max: 1, log })
      closers.push(leaseDb.close)
      const pg = createPostgresDatastore(postgres)
      closers.push(pg.close)
      datastore = pg
      removeExpiredRows = (now) => pg.removeExpiredRows(now)
      putFenced = (kind, key, value, fence) => pg.putFenced(kind, key, value, fence)
    } else {
      const { openEmbeddedDatastore } = await import('./datastore-embedded.js')
      const embedded = await openEmbeddedDatastore({ dir })
      closers.push(() => embedded.close())
      datastore = embedded
      removeExpiredRows = (now) => embedded.removeWhere('appTables', (row) => isExpiredRow(row, now))
    }
    let appTasks: SeedTaskQueue
    let mailQueue: SeedTaskQueue
    if (config.tasks === 'postgres' && postgres !== null) {
      const { createPostgresTaskQueue, TASKS_CHANNEL } = await import('../lib/tasks/queue-postgres.js')
      const { startPostgresListener } = await import('../lib/storage/postgres-listen.js')
      // Several seeds serve one queue (nodes spread their task ops): a task made ready on one wakes the leases
      // waiting on the others through NOTIFY; this process's own notifications are told apart by `instance`.
      const instance = `${config.nodeId}/${process.pid}/${randomBytes(4).toString('hex')}`
      const app = createPostgresTaskQueue({ db: postgres, queue: 'tasks', log, notifyAs: instance })
      appTasks = app
      closers.push(() => app.close())
      // The outbound mail queue: the same table under its own queue name, so app consumers never see its tasks.
      const mail = createPostgresTaskQueue({ db: postgres, queue: 'mailq', log, notifyAs: instance })
      mailQueue = mail
      closers.push(() => mail.close())
      const byName = new Map([['tasks', app], ['mailq', mail]])
      const listener = startPostgresListener({
        url: config.datastore, channel: TASKS_CHANNEL, log,
        onNotify(payload) {
          const [name, from] = payload.split(' ')
          if (from !== instance) byName.get(name ?? '')?.wakeWaiters()
        },
        // Anything notified while the session was away was missed: look now.
        onListening: () => byName.forEach((q) => q.wakeWaiters()),
      })
      closers.push(() => listener.close())
    } else {
      const { openEmbeddedTaskQueue } = await import('./tasks-embedded.js')
      // Its own LMDB file beside the datastore's.
      const tasks = await openEmbeddedTaskQueue({ dir })
      appTasks = tasks
      closers.push(() => tasks.close())
      // The outbound mail queue (mail nodes lease it, ops mailq.*): the same queue in a file of its own.
      const mail = await openEmbeddedTaskQueue({ dir, file: 'mail-out.mdb' })
      mailQueue = mail
      closers.push(() => mail.close())
    }
    const where = isPostgres(config.datastore) ? maskPostgresUrl(config.datastore) : 'embedded'
    log.info({ datastore: where, tasks: appTasks.backend }, 'seed stores open')
    return {
      datastore, appTasks, mailQueue, where, removeExpiredRows, postgres, leaseDb, putFenced,
      once: {
        datastore: postgres !== null ? storeRemembers : createOpMemory(),
        // --datastore postgres with --tasks embedded keeps the queues in LMDB.
        tasks: postgres !== null && config.tasks === 'postgres' ? storeRemembers : createOpMemory(),
      },
      async close() {
        for (const close of closers.splice(0).reverse()) await close().catch((err: unknown) => log.warn({ err }, 'closing a seed store failed'))
      },
    }
  } catch (err) {
    return unwind(closers, err)
  }
}
