/**
 * Rolling restarts started over the API (`POST /api/rolling-restarts`). One
 * takes minutes, longer than an HTTP call should wait, so it runs as a job
 * in the child that accepted it and writes its progress (each line the CLI
 * would print, then the result or the error) to the datastore's `adminJobs`
 * kind, where `GET /api/rolling-restarts/:id` reads it from any child.
 *
 * A job's child that stops (drain, crash) cannot finish it: on a graceful
 * stop running jobs are marked `abandoned`; after a crash the record stays
 * `running` with an `updatedAt` that no longer moves.
 */
import { randomBytes } from 'node:crypto'
import { toWire } from '../../lib/core/errors.js'
import type { Logger } from '../../lib/core/log.js'
import type { Datastore, DatastoreValue } from '../../lib/storage/datastore.js'
import type { MetaClient } from '../../lib/transport/meta-client.js'
import { runRollingRestart, type RollingRestartPlan, type RollingRestartResult } from '../../lib/cli/admin/rolling-restart.js'

export const JOB_ID = /^rr-[0-9a-z]{8,12}-[0-9a-f]{8}$/
/** Progress lines a job keeps (the newest). */
const MAX_LINES = 200

export interface RollingRestartJob {
  id: string
  state: 'running' | 'done' | 'failed' | 'abandoned'
  operator: string
  plan: RollingRestartPlan
  startedAt: number
  updatedAt: number
  lines: { at: number; line: string }[]
  result: RollingRestartResult | null
  error: { code: string; message: string } | null
}

const jobKey = (id: string): string => `rr/${id}`

export interface JobRunner {
  /** Records the job and starts it; resolves once it is recorded (the job runs on). */
  start(plan: RollingRestartPlan, operator: string): Promise<RollingRestartJob>
  read(id: string): Promise<RollingRestartJob | null>
  /** Marks this child's running jobs abandoned. */
  close(): Promise<void>
}

export function createJobRunner(client: MetaClient, datastore: Datastore, log: Logger): JobRunner {
  const running = new Map<string, RollingRestartJob>()
  // Writes of one job go one after another, in order, so the record never goes back in time.
  const chains = new Map<string, Promise<void>>()
  const save = (job: RollingRestartJob): Promise<void> => {
    job.updatedAt = Date.now()
    const copy = structuredClone(job)
    const next = (chains.get(job.id) ?? Promise.resolve())
      .then(() => datastore.put('adminJobs', jobKey(job.id), copy as unknown as DatastoreValue))
      .catch((err: unknown) => log.warn({ err, job: job.id }, 'rolling restart progress not saved'))
    chains.set(job.id, next)
    return next
  }
  return {
    async start(plan, operator) {
      const now = Date.now()
      const job: RollingRestartJob = {
        id: `rr-${now.toString(36)}-${randomBytes(4).toString('hex')}`, state: 'running', operator, plan,
        startedAt: now, updatedAt: now, lines: [], result: null, error: null,
      }
      await datastore.put('adminJobs', jobKey(job.id), job as unknown as DatastoreValue)
      running.set(job.id, job)
      const say = (line: string): void => {
        job.lines.push({ at: Date.now(), line })
        if (job.lines.length > MAX_LINES) job.lines.splice(0, job.lines.length - MAX_LINES)
        void save(job)
      }
      void runRollingRestart(client, plan, say).then(
        (result) => Object.assign(job, { state: 'done', result }),
        (err: unknown) => Object.assign(job, { state: 'failed', error: { code: toWire(err).code, message: toWire(err).message } }),
      ).then(() => {
        running.delete(job.id)
        log.info({ job: job.id, state: job.state }, 'rolling restart ended')
        return save(job)
      })
      return structuredClone(job)
    },
    async read(id) {
      return (await datastore.get('adminJobs', jobKey(id))) as unknown as RollingRestartJob | null
    },
    async close() {
      for (const job of running.values()) {
        job.state = 'abandoned'
        job.error = { code: 'ESPRA_ERR_HTTP_DRAINING', message: 'the admin node child running it stopped; the nodes done so far stay restarted' }
        void save(job)
      }
      running.clear()
      await Promise.all(chains.values())
    },
  }
}
