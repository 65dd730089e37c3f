/**
 * A mail node's outbound delivery, run by its parent (one per node, so the
 * node-wide and per-domain caps hold): leases `espra.mail.out` tasks (one per
 * message and recipient domain) from the outbound queue, keeps their leases
 * alive while they wait for a slot or deliver, and settles each once its
 * outcome is written to the message record.
 *
 * At least once: a node killed mid-delivery leaves its leases to expire, and
 * the tasks run again elsewhere (the receiver sees a duplicate only when the
 * cut came after its 250).
 *
 * Scheduling a retry: a new task with a fresh generation token is enqueued
 * first, then the record names that generation. A crash between the two
 * leaves an orphan task (never named: dropped once 15 s old) while the current task,
 * still named by the record, runs again after its lease expires. A task whose
 * generation the record no longer names (retried, held, dropped by an
 * operator) is stale and dropped.
 */
import { promises as dns } from 'node:dns'
import { readFileSync } from 'node:fs'
import DKIM from 'nodemailer/lib/dkim'
import type { NodeConfig } from '../../lib/core/config.js'
import type { Logger } from '../../lib/core/log.js'
import { rootCertificates } from 'node:tls'
import { createMtaSts } from './mta-sts.js'
import { createWakeablePause } from '../../lib/core/wakeable-pause.js'
import { buildDsn, headerSection, type DsnRecipient } from '../../lib/mail/dsn.js'
import { OUT_TASK_NAME } from '../../lib/mail/outbound.js'
import { addEvent as appendEvent, enqueueOutbound, newGen, outTask, setGen, readOutRaw, readOutRecord, updateOutRecord, type OutboundDeps, type OutEvent, type OutRecord } from '../../lib/mail/outbound-store.js'
import { isSuppressed, suppress } from '../../lib/mail/suppression.js'
import type { EventSink } from '../../lib/mail/outbound-events.js'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { TaskQueue } from '../../lib/tasks/queue.js'
import { decodePayload, type LeasedTask, type Settlement } from '../../lib/tasks/task.js'
import { attemptDelivery, type AttemptResult, type RecipientResult, type SmtpOptions } from './outbound-smtp.js'
import { createSlots } from './outbound-slots.js'
import type { OutboundCounters } from './counters.js'

const WAIT_MS = 2000
const PAUSE_MS = 1000
/** A task whose token its record does not name yet is asked again after this, for at most ORPHAN_MS (under OUT_TASK_ATTEMPTS tries). */
const UNNAMED_RETRY_MS = 1000
const ORPHAN_MS = 15_000
/** Infrastructure failures (datastore, blob store away) retry the task after this. */
const INFRA_RETRY_MS = 5000

export interface OutboundWorkerDeps {
  readonly config: NodeConfig
  readonly log: Logger
  readonly datastore: Datastore
  readonly queue: TaskQueue
  readonly blobs: BlobStore
  /** Where the events of each delivery go besides the record (the app's handleMailEvent). */
  readonly events: EventSink
  /** Recipients by outcome, for the metrics. */
  readonly counters?: OutboundCounters
}

export interface OutboundWorker {
  /** Drained (admin drain): take no new deliveries (those in hand finish); false: take them again. */
  setPaused(paused: boolean): void
  close(): Promise<void>
  destroy(): void
}

const domainOf = (address: string): string => address.slice(address.lastIndexOf('@') + 1).toLowerCase()

/** The wait before attempt `n + 1` after `n` failed attempts. */
export function retryDelay(config: Pick<NodeConfig, 'mailRetryBase' | 'mailRetryMax'>, failed: number): number {
  return Math.min(config.mailRetryMax, config.mailRetryBase * 2 ** Math.min(Math.max(failed - 1, 0), 30))
}

export function startOutboundWorker(deps: OutboundWorkerDeps): OutboundWorker {
  const { config, log, datastore, queue, blobs } = deps
  const store: OutboundDeps = { datastore, queue, blobs }
  const slots = createSlots(config.mailConcurrency, config.mailConcurrencyPerDomain)
  const resolver = new dns.Resolver({ timeout: 5000, tries: 2 })
  if (config.mailDns.length > 0) resolver.setServers([...config.mailDns])
  // Read once at start (checked by the config loader).
  const tlsCa = config.mailTlsCa === null ? [] : [readFileSync(config.mailTlsCa)]
  const mtaSts = config.mailMtaSts && config.smtpRelay === null
    ? createMtaSts({ resolver, fetchAddress: config.mailMtaStsFetch, ca: tlsCa, timeoutMs: Math.min(config.mailSmtpTimeout, 30_000), log })
    : null
  const ca = tlsCa.length === 0 ? undefined : [...rootCertificates, ...tlsCa.map((c) => c.toString('utf8'))]
  const smtp: SmtpOptions = { relay: config.smtpRelay, resolver, mxPort: config.mailMxPort, timeoutMs: config.mailSmtpTimeout, name: config.mailHostname, mtaSts, ca, log }
  // Read once at start (checked by the config loader: a bad file never gets here).
  const dkim = new Map(config.dkim.map((k) => [k.domain, new DKIM({ domainName: k.domain, keySelector: k.selector, privateKey: readFileSync(k.keyFile, 'utf8') })]))
  const leaseMs = config.mailLease
  const held = new Map<string, LeasedTask>()
  let stopped = false
  let paused = false
  let unreachable = false
  const running = new Set<Promise<void>>()

  const { pause, wake: signal } = createWakeablePause()

  async function settle(result: Settlement): Promise<void> {
    held.delete(result.id)
    signal()
    try {
      const lost = await queue.settle([result])
      if (lost.length > 0) log.warn({ task: result.id }, 'an outbound task\'s lease expired before it was settled: it runs again')
    } catch (err) {
      log.warn({ err, task: result.id }, 'could not settle an outbound task; its lease will expire and it runs again')
    }
  }

  async function sign(r: OutRecord, raw: Buffer): Promise<Buffer> {
    const domain = r.kind === 'message' ? domainOf(r.from) : config.mailHostname
    const signer = dkim.get(domain)
    if (signer === undefined) return raw
    const chunks: Buffer[] = []
    for await (const c of signer.sign(raw)) chunks.push(c as Buffer)
    return Buffer.concat(chunks)
  }

  /** A notice (bounce or delay) to the message's sender; never for the null sender. */
  async function notify(r: OutRecord, raw: Buffer | null, action: 'failed' | 'delayed', recipients: DsnRecipient[], until?: number): Promise<void> {
    if (r.from === '' || recipients.length === 0) return
    const dsn = buildDsn({
      action, reportingMta: config.mailHostname, to: r.from, originalMessageId: r.messageId, originalSubject: r.subject,
      originalHeaders: raw === null ? '' : headerSection(raw), arrivalDate: r.at, recipients, ...(until !== undefined ? { until } : {}),
    })
    const id = await enqueueOutbound(store, { from: '', rcptsByDomain: new Map([[domainOf(r.from), [r.from]]]), raw: dsn.raw, subject: dsn.subject, messageId: dsn.messageId, kind: action === 'failed' ? 'bounce' : 'delay' })
    log.info({ message: r.id, notice: id, action, to: r.from }, action === 'failed' ? `bounce ${id} queued to ${r.from} for message ${r.id}` : `delay notice ${id} queued to ${r.from} for message ${r.id}`)
  }

  async function deliver(task: LeasedTask): Promise<void> {
    const p = decodePayload(task.payload) as { id?: unknown; domain?: unknown; gen?: unknown } | null
    if (task.name !== OUT_TASK_NAME || typeof p?.id !== 'string' || typeof p.domain !== 'string' || typeof p.gen !== 'string') {
      log.warn({ task: task.id, name: task.name }, 'outbound queue: a task that is not a delivery; dropped')
      return settle({ id: task.id, attempt: task.attempt, result: 'done' })
    }
    const { id, domain } = p
    const gen = p.gen
    const current = (r: OutRecord | null): boolean => r !== null && !r.dropped && !r.held && r.domains[domain]?.gen === gen && r.domains[domain]!.state !== 'done'
    const first = await readOutRecord(datastore, id)
    const d = first?.domains[domain]
    // A token the record does not name yet: its writer enqueues before it writes the record. Ask again shortly;
    // one still unnamed after ORPHAN_MS belongs to a writer that died in between, and is dropped.
    if (first !== null && d !== undefined && !first.dropped && d.state !== 'done' && d.gen !== gen && !(d.retired ?? []).includes(gen) && Date.now() - task.enqueuedAt < ORPHAN_MS) {
      return settle({ id: task.id, attempt: task.attempt, result: 'failed', error: 'its record does not name it yet', retryInMs: UNNAMED_RETRY_MS })
    }
    // Dropped, held (release queues it again), done, or superseded by a newer task: nothing to do.
    if (!current(first)) return settle({ id: task.id, attempt: task.attempt, result: 'done' })

    const release = await slots.take(domain)
    let result: AttemptResult
    let r: OutRecord
    let raw: Buffer | null
    const suppressed: string[] = []
    try {
      const again = await readOutRecord(datastore, id)
      if (!current(again)) return settle({ id: task.id, attempt: task.attempt, result: 'done' })
      r = again!
      raw = await readOutRaw(store, r)
      const pending = r.domains[domain]!.pending
      const toSend: string[] = []
      for (const rcpt of pending) ((await isSuppressed(datastore, rcpt)) ? suppressed : toSend).push(rcpt)
      if (raw === null) result = { delivered: [], temporary: [], permanent: toSend.map((rcpt) => ({ rcpt, answer: '554 5.3.0 the message\'s stored bytes are gone (blob store or record removed)' })), remote: null }
      else if (toSend.length === 0) result = { delivered: [], temporary: [], permanent: [], remote: null }
      else result = await attemptDelivery(domain, smtp, r.from, toSend, await sign(r, raw))
    } finally {
      release()
    }

    const now = Date.now()
    const d0 = r.domains[domain]!
    const failedSoFar = d0.attempts + 1
    const givingUp = now - r.at >= config.mailGiveUp
    const bounced: RecipientResult[] = [...result.permanent]
    const deferred: RecipientResult[] = []
    for (const t of result.temporary) (givingUp ? bounced : deferred).push(givingUp ? { rcpt: t.rcpt, answer: `gave up after ${Math.round((now - r.at) / 1000)}s; last answer: ${t.answer}` } : t)
    const next = deferred.length > 0 ? now + retryDelay(config, failedSoFar) : null
    const warn = deferred.length > 0 && !d0.warned && now - r.at >= config.mailDelayWarning && r.from !== ''
    const gen2 = newGen()
    // The next attempt's task first (see the header); an orphan if the record below is not written.
    if (next !== null) await queue.enqueue(outTask(id, domain, gen2, next - now))

    let added: OutEvent[] = []
    let warned = false
    const written = await updateOutRecord(datastore, id, (rec) => {
      added = []
      warned = false
      const addEvent = (r: OutRecord, e: OutEvent): void => {
        added.push(e)
        appendEvent(r, e)
      }
      const d = rec.domains[domain]
      if (d === undefined) return false
      const done = new Set([...result.delivered.map((x) => x.rcpt.toLowerCase()), ...bounced.map((x) => x.rcpt.toLowerCase()), ...suppressed.map((x) => x.toLowerCase())])
      d.pending = d.pending.filter((a) => !done.has(a.toLowerCase()))
      d.delivered.push(...result.delivered.map((x) => x.rcpt))
      d.failed.push(...bounced.map((x) => x.rcpt), ...suppressed)
      d.attempts = failedSoFar
      if (result.delivered.length > 0) addEvent(rec, { at: now, type: 'delivered', domain, rcpts: result.delivered.map((x) => x.rcpt), detail: `${result.remote ?? ''}: ${result.delivered[0]!.answer}` })
      for (const b of bounced) addEvent(rec, { at: now, type: 'bounced', domain, rcpts: [b.rcpt], detail: b.answer })
      if (suppressed.length > 0) addEvent(rec, { at: now, type: 'suppressed', domain, rcpts: suppressed, detail: 'suppressed after an earlier hard bounce (admin mail suppression ls)' })
      if (d.pending.length === 0) {
        d.state = 'done'
        d.next = null
      } else if (next !== null && d.gen === gen) {
        d.state = 'deferred'
        d.next = next
        setGen(d, gen2)
        d.last = deferred[0]!.answer
        addEvent(rec, { at: now, type: 'deferred', domain, rcpts: deferred.map((x) => x.rcpt), detail: deferred[0]!.answer, next })
        if (warn && !d.warned) {
          warned = true
          d.warned = true
          addEvent(rec, { at: now, type: 'delay-warned', domain, rcpts: deferred.map((x) => x.rcpt), detail: `not delivered after ${Math.round((now - rec.at) / 1000)}s; notice sent to ${rec.from}` })
        }
      }
      return true
    })
    if (written === null) return settle({ id: task.id, attempt: task.attempt, result: 'done' })
    await deps.events(written, added)
    const counted = deps.counters?.recipients
    if (counted) {
      counted.delivered += result.delivered.length
      counted.deferred += deferred.length
      counted.bounced += bounced.length
      counted.suppressed += suppressed.length
    }
    log.info({ message: id, domain, delivered: result.delivered.length, deferred: deferred.length, bounced: bounced.length, suppressed: suppressed.length, ...(next !== null ? { next: new Date(next).toISOString() } : {}) },
      `outbound ${id} to ${domain}: ${result.delivered.length} delivered, ${deferred.length} deferred, ${bounced.length} bounced, ${suppressed.length} suppressed`)

    // Hard bounces (a 5xx for the recipient, not giving up on a host that never answered) are suppressed cluster-wide.
    for (const b of result.permanent) await suppress(datastore, b.rcpt, { reason: b.answer, message: id, ttlMs: config.mailSuppressionTtl })
    await notify(r, raw, 'failed', bounced.map((b) => ({ address: b.rcpt, diagnostic: b.answer, remote: result.remote })))
    if (warned) await notify(r, raw, 'delayed', deferred.map((x) => ({ address: x.rcpt, diagnostic: x.answer, remote: result.remote })), r.at + config.mailGiveUp)
    return settle({ id: task.id, attempt: task.attempt, result: 'done' })
  }

  function run(task: LeasedTask): void {
    const p = deliver(task).catch((err: unknown) => {
      log.warn({ err, task: task.id }, `outbound task ${task.id} failed (datastore, queue or blob store); retrying`)
      return settle({ id: task.id, attempt: task.attempt, result: 'failed', error: (err as Error)?.message ?? String(err), retryInMs: INFRA_RETRY_MS })
    })
    running.add(p)
    void p.finally(() => running.delete(p))
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      if (paused) {
        await pause(PAUSE_MS)
        continue
      }
      // Lease ahead of free slots so a slow domain does not idle the others, but never far ahead.
      const room = config.mailConcurrency * 2 - held.size
      if (room <= 0) {
        await pause(PAUSE_MS)
        continue
      }
      let tasks: LeasedTask[]
      try {
        tasks = await queue.lease({ max: Math.min(room, 100), leaseMs: leaseMs, waitMs: held.size > 0 ? 0 : WAIT_MS })
        if (unreachable) log.info('outbound mail queue reachable again')
        unreachable = false
      } catch (err) {
        if (!unreachable && !stopped) log.warn({ err }, 'outbound mail queue unreachable; retrying')
        unreachable = true
        await pause(PAUSE_MS)
        continue
      }
      for (const task of tasks) {
        // Stopped or drained while the lease waited for work: the task goes back first in line, its attempt not counted.
        if (stopped || paused) {
          void queue.settle([{ id: task.id, attempt: task.attempt, result: 'released' }]).catch(() => {})
          continue
        }
        held.set(task.id, task)
        run(task)
      }
      if (tasks.length === 0 && held.size > 0) await pause(PAUSE_MS)
    }
  }

  const renewal = setInterval(() => {
    if (held.size === 0) return
    queue.extend([...held.values()].map((t) => ({ id: t.id, attempt: t.attempt })), leaseMs).catch((err: unknown) => log.warn({ err }, 'could not renew outbound task leases'))
  }, leaseMs / 3)
  renewal.unref()
  const looping = loop()
  log.info({ relay: config.smtpRelay === null ? null : new URL(config.smtpRelay).host, concurrency: config.mailConcurrency, perDomain: config.mailConcurrencyPerDomain, dkim: config.dkim.map((k) => k.domain) },
    config.smtpRelay === null ? 'outbound mail: delivering straight to MX hosts' : 'outbound mail: delivering through the relay')

  return {
    setPaused(value) {
      if (value === paused) return
      paused = value
      log.info({ paused }, paused ? 'outbound mail: node drained, taking no new deliveries' : 'outbound mail: taking deliveries again')
      signal()
    },
    async close() {
      stopped = true
      signal()
      await looping
      // Deliveries under way finish (bounded by --mail-smtp-timeout per step); the node's stop deadline cuts the rest, whose leases then expire.
      await Promise.allSettled([...running])
      clearInterval(renewal)
    },
    destroy() {
      stopped = true
      signal()
      clearInterval(renewal)
    },
  }
}
