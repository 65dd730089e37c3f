/**
 * `espra-node admin mail inbound [--failed] [--json]`: inbound messages not
 * handed to the app yet, from their records (datastore kind `mailInbound`,
 * lib/mail/inbound-record.ts) and the task queue's `espra.mail` dead
 * letters; `admin mail inbound retry <id>` hands a failed one again.
 *
 * States: `pending` (queued; retried with backoff after a failure, the last
 * error shown), `failed` (its handoff is a dead letter), `unqueued` (recorded
 * but the node died before queueing it; the client's retry queues it, or
 * `retry`). Messages handed to `handleMail` are not listed.
 */
import { createError } from '../../core/errors.js'
import { createLogger } from '../../core/log.js'
import { redisUrl } from '../../core/options-tasks.js'
import { inboundRecordKey, MAIL_TASK_ATTEMPTS, MAIL_TASK_NAME } from '../../mail/inbound.js'
import { handoffPayload, type InboundRecord } from '../../mail/inbound-record.js'
import { createDatastoreClient } from '../../storage/datastore-client.js'
import { listAll, type Datastore, type DatastoreValue } from '../../storage/datastore.js'
import { createMetaTaskQueue } from '../../tasks/queue-meta.js'
import type { TaskQueue } from '../../tasks/queue.js'
import { newTask, type DeadTask } from '../../tasks/task.js'
import { connect } from './cli.js'
import type { TaskOptions } from './tasks.js'

export type InboundState = 'pending' | 'failed' | 'unqueued'

export interface InboundView {
  id: string
  state: InboundState
  receivedAt: number
  from: string
  to: readonly string[]
  size: number
  task: string | null
  attempts: number
  lastError: string | null
}

/** The seed's datastore and the cluster's queue (Redis with --redis / ESPRA_REDIS), over one meta connection. */
async function open(opts: TaskOptions, env: NodeJS.ProcessEnv = process.env): Promise<{ datastore: Datastore; queue: TaskQueue; close(): Promise<void> }> {
  const url = opts.redis ?? (env['ESPRA_REDIS'] || undefined)
  let checked: string | null = null
  if (url !== undefined) {
    try {
      checked = redisUrl(url)
    } catch (reason) {
      throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--redis', reason: String(reason) })
    }
  }
  const client = await connect(opts)
  const queue = checked !== null
    ? (await import('../../tasks/queue-redis.js')).createRedisTaskQueue({ url: checked, log: createLogger('silent', { role: 'admin-cli', node: 'cli' }) })
    : createMetaTaskQueue(client)
  return {
    datastore: createDatastoreClient(client),
    queue,
    close: async () => {
      if (checked !== null) await queue.close()
      await client.close()
    },
  }
}

async function deadMailTasks(queue: TaskQueue): Promise<Map<string, DeadTask>> {
  const dead = new Map<string, DeadTask>()
  let after: string | undefined
  do {
    const page = await queue.deadLetters({ limit: 1000, ...(after === undefined ? {} : { after }) })
    for (const t of page.tasks) if (t.name === MAIL_TASK_NAME) dead.set(t.id, t)
    after = page.next ?? undefined
  } while (after !== undefined)
  return dead
}

/** Every message not handed yet, oldest first. Reads every record (the seed sweeps old ones: docs/mail.md, "Retention"). */
export async function listInbound(datastore: Datastore, queue: TaskQueue): Promise<InboundView[]> {
  const dead = await deadMailTasks(queue)
  const out: InboundView[] = []
  for await (const { value } of listAll(datastore, 'mailInbound', 'in/')) {
    const r = value as unknown as InboundRecord
    if (typeof r.handledAt === 'number') continue
    const failed = r.task !== null ? dead.get(r.task) : undefined
    out.push({
      id: r.id,
      state: failed !== undefined ? 'failed' : r.task === null ? 'unqueued' : 'pending',
      receivedAt: r.at,
      from: r.envelope.from,
      to: r.envelope.to,
      size: r.raw.size,
      task: r.task,
      attempts: failed?.attempts ?? r.attempts ?? 0,
      lastError: failed?.error ?? r.lastError ?? null,
    })
  }
  return out.sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : 1))
}

function formatInbound(list: readonly InboundView[], shown: number): string {
  if (list.length === 0) return '(no inbound messages waiting: every one was handed to handleMail)'
  const rows = [['ID', 'STATE', 'RECEIVED', 'ATTEMPTS', 'FROM', 'TO', 'LAST ERROR'], ...list.slice(0, shown).map((m) => [
    m.id, m.state, new Date(m.receivedAt).toISOString(), String(m.attempts), m.from === '' ? '<>' : m.from.slice(0, 60),
    m.to.length > 1 ? `${m.to[0]!.slice(0, 60)} +${m.to.length - 1}` : (m.to[0] ?? '').slice(0, 60),
    (m.lastError ?? '').replace(/\s+/g, ' ').slice(0, 160),
  ])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const table = rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')
  return list.length > shown ? `${table}\n(${list.length - shown} more: raise --limit or use --json)` : table
}

export interface InboundSummary {
  pending: number
  failed: number
  unqueued: number
  /** The first `limit` messages (only the failed ones with `failed`). */
  messages: InboundView[]
}

/** Counts by state and the messages asked for (`admin mail inbound --json`, `GET /api/mail/inbound`). */
export async function readInbound(datastore: Datastore, queue: TaskQueue, opts: { failed: boolean; limit: number }): Promise<{ summary: InboundSummary; list: InboundView[] }> {
  const all = await listInbound(datastore, queue)
  const list = opts.failed ? all.filter((m) => m.state === 'failed') : all
  const count = (s: InboundState) => all.filter((m) => m.state === s).length
  return { summary: { pending: count('pending'), failed: count('failed'), unqueued: count('unqueued'), messages: list.slice(0, opts.limit) }, list }
}

export async function adminMailInbound(opts: TaskOptions & { failed?: boolean; json?: boolean; limit?: string }): Promise<void> {
  const limit = Number(opts.limit ?? 100)
  if (!/^\d+$/.test(String(opts.limit ?? 100)) || limit < 1 || limit > 100_000) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '--limit', reason: 'must be an integer from 1 to 100000' })
  const { datastore, queue, close } = await open(opts)
  try {
    const { summary, list } = await readInbound(datastore, queue, { failed: opts.failed === true, limit })
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`)
      return
    }
    process.stdout.write(`${formatInbound(list, limit)}\n`)
  } finally {
    await close()
  }
}

export const MAIL_ID = /^m[0-9a-z]{8,40}$/

/**
 * Hands a failed (dead letter) or unqueued message again. `warning` says
 * when the client queued it meanwhile too (it may be handed twice).
 */
export async function retryInbound(datastore: Datastore, queue: TaskQueue, id: string): Promise<{ id: string; warning?: string }> {
  const record = (await datastore.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null
  if (record === null) throw createError('ESPRA_ERR_MAIL_NOT_FOUND', { what: 'inbound message', id, hint: 'admin mail inbound lists the waiting ones' })
  if (typeof record.handledAt === 'number') throw createError('ESPRA_ERR_MAIL_NOT_FAILED', { id, reason: `it was handed to handleMail at ${new Date(record.handledAt).toISOString()}; nothing to retry` })
  if (record.task === null) {
    // Recorded, never queued (the node died in between): queue it now, as the client's retry would.
    const task = await queue.enqueue(newTask(MAIL_TASK_NAME, handoffPayload(record), { attempts: MAIL_TASK_ATTEMPTS }))
    // The record names one task, and only that task hands the message (roles/app/mail-handoff.ts): a message that was
    // queued after all (the seed answered before naming its task, or died before) is still handed once.
    if (!(await datastore.putIf('mailInbound', inboundRecordKey(id), { ...record, task } as unknown as DatastoreValue, { task: null }))) {
      const now = (await datastore.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null
      return { id, warning: `inbound message ${id} was queued meanwhile as task ${now?.task ?? '(its record is gone)'}: that task hands it, the one queued now (${task}) is settled without handing it again` }
    }
  } else if (!(await queue.retry(record.task))) {
    const attempts = record.attempts ?? 0
    throw createError('ESPRA_ERR_MAIL_NOT_FAILED', { id, reason: `it is pending (${attempts} of ${MAIL_TASK_ATTEMPTS} attempts${record.lastError ? `, last error: ${record.lastError.slice(0, 200)}` : ''}): it is retried by itself` })
  }
  return { id }
}

/** Hands a failed (dead letter) or unqueued message again; prints its id. */
export async function adminMailInboundRetry(id: string, opts: TaskOptions): Promise<void> {
  if (!MAIL_ID.test(id)) throw createError('ESPRA_ERR_CONFIG_INVALID', { option: '<id>', reason: `must be an inbound message id such as m${Date.now().toString(36)}0123456789ab (admin mail inbound lists them; got ${JSON.stringify(id.slice(0, 60))})` })
  const { datastore, queue, close } = await open(opts)
  try {
    const { warning } = await retryInbound(datastore, queue, id)
    if (warning !== undefined) process.stderr.write(`warning: ${warning}\n`)
    process.stdout.write(`${id}\n`)
  } finally {
    await close()
  }
}
