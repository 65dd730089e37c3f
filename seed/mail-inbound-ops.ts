/**
 * `mail.inbound.commit` (docs/meta-protocol.md, "Inbound mail"): a mail
 * child's group of inbound messages, recorded, deduplicated and queued in
 * one round trip instead of four per message (docs/mail.md, "Durability").
 *
 * The same steps and order as one message took through the single ops
 * (roles/mail/inbound-store.ts), each step done for the whole group at once
 * so that its writes share one LMDB commit (lmdb-js commits the writes of
 * one tick together):
 *
 * 1. read each message's dedupe record; a retry within the window of a
 *    message still recorded is answered with the first id (and its handoff
 *    queued if the first attempt died before that);
 * 2. write the new messages' records (no task yet), their dedupe records
 *    (compare-and-set, as before) and, for a small message whose bytes ride
 *    in the entry (`raw.store: 'ds'`), those bytes (`raw/<id>`), so they
 *    are durable in the same flush as the record that names them;
 * 3. enqueue their handoff tasks on the embedded queue;
 * 4. write the records again naming their tasks.
 *
 * Each step waits for its commit only (visible, safe from a `kill -9`); once
 * steps 1–3 are done the op waits for both LMDB environments (datastore and
 * queue) to be flushed to disk, once for the whole group, and then answers
 * (so the 250s it allows survive a power loss; seed/datastore-embedded.ts).
 * Step 1 reads the committed state synchronously (no writer wait: a group
 * holding the same dedupe key is waited for, below). On the embedded queue
 * steps 2 and 3 are written at once, the queue's environment committing in
 * parallel with the datastore's ({@link GatedEnqueue}): a new message's task
 * is handed out only once its record and dedupe record have committed and
 * the key was won; a copy that lost the key has its record and bytes
 * deleted first, then its task, which was never handed out (a key taken
 * over from an expired one: its task after, as before). One commit wait
 * fewer (bench/mail-inbound-op against the sequential path: 1.07×, 1.29×
 * and 0.97× the messages/s with 1, 2 and 4 groups of 10 in flight;
 * docs/benchmarks.md).
 * Step 4 starts after that flush and the answer does not wait for it: each
 * commit in the group's path is a wait for the writer (bench/mail-inbound,
 * 2026-12-03: 6, 113 and 105 ms on average for steps 1, 2 and 3–4 against
 * a 35 ms flush, at load 13), so one commit fewer is most of a round trip.
 *
 * With steps 2 and 3 in parallel a crash may also leave a task without its
 * record: it runs after the restart, finds no record and is settled without
 * handing anything (roles/app/mail-handoff.ts); the client heard no 250 and
 * retries. A copy that lost its dedupe key, killed before its record's
 * deletion committed, would keep that record and its task (a second
 * handoff), so only a key nobody else can win is gated: a new one (none
 * read in step 1) is only created by this op, which holds it (with
 * `--redis` mail nodes take the single ops and never this op); a key taken
 * over from an expired one can be lost to the sweep, so its task is written
 * only once the key is won, as before.
 *
 * Otherwise a crash leaves what it left before: between 2 and 3 a record
 * without a task, which the client's retry (it heard no 250) finds and
 * queues; between 3 and 4 (now also just after the answer) a record without its task's id,
 * whose handoff is queued again if the client retries; the app node claims
 * the record for the first task it runs (roles/app/mail-handoff.ts), and only
 * the task the record names hands the message, so it is handed once;
 * `admin mail inbound` shows it as `unqueued` only until then. Step 4 is a
 * compare-and-set from no task, so it never undoes such a claim. Two groups holding
 * the same dedupe key (a client retrying while its first attempt is still
 * being written) are taken one after the other: the second waits for the
 * first and then finds it.
 */
import { createError, EspraError } from '../lib/core/errors.js'
import { checkInboundBatch, inboundRecord, type InboundEntry, type InboundResult } from '../lib/mail/inbound-batch.js'
import { dedupeKey, inboundRawKey, inboundRecordKey, MAIL_TASK_ATTEMPTS, MAIL_TASK_NAME } from '../lib/mail/inbound.js'
import { handoffPayload, type InboundRecord } from '../lib/mail/inbound-record.js'
import type { Datastore, DatastoreValue } from '../lib/storage/datastore.js'
import type { TaskQueue } from '../lib/tasks/queue.js'
import type { Flushable, GatedEnqueue } from './tasks-embedded.js'
import { newTask, type NewTask } from '../lib/tasks/task.js'
import type { MetaPeer } from '../lib/transport/meta-server.js'
import type { RequestHandler } from '../lib/transport/meta-session.js'

interface DedupeRecord {
  id: string
  at: number
}

const KIND = 'mailInbound'

function handoffTask(record: InboundRecord): NewTask {
  return newTask(MAIL_TASK_NAME, handoffPayload(record), { attempts: MAIL_TASK_ATTEMPTS })
}

/**
 * The op, for the seed's table: over the seed's datastore and its embedded
 * task queue (the one app nodes lease). An embedded store or queue
 * ({@link Flushable}) is written through its unflushed view and flushed once
 * per group; another (PostgreSQL) is durable when each write resolves.
 */
export function mailInboundHandlers(store: Datastore & Partial<Flushable<Datastore>>, tasks: TaskQueue & Partial<Flushable<Pick<TaskQueue, 'enqueue'> & Partial<GatedEnqueue>>>, windowSeen: (ms: number) => void = () => undefined): [string, RequestHandler<MetaPeer>][] {
  const datastore = store.unflushed?.() ?? store
  const queue: Pick<TaskQueue, 'enqueue'> & Partial<GatedEnqueue> = tasks.unflushed?.() ?? tasks
  const flushed = () => Promise.all([store.flushed?.(), tasks.flushed?.()])
  /** Dedupe keys a group is writing now, and when that group is done. */
  const busy = new Map<string, Promise<void>>()

  /**
   * Steps 1–3 for entries whose dedupe keys this group holds; step 4 is
   * returned (`note`), for the caller to start once the flush it answers
   * after is under way: the answer does not wait for its commit.
   */
  async function record(entries: readonly InboundEntry[], keys: readonly string[], windowMs: number): Promise<{ results: InboundResult[]; note: () => Promise<unknown> }> {
    const results: InboundResult[] = new Array(entries.length)
    const seen = await Promise.all(keys.map((k) => datastore.get(KIND, k) as Promise<DedupeRecord | null>))
    const firsts = await Promise.all(seen.map((s, i) =>
      s !== null && entries[i]!.at - s.at < windowMs ? datastore.get(KIND, inboundRecordKey(s.id)) as unknown as Promise<InboundRecord | null> : null))
    const fresh: number[] = []
    const unqueued: InboundRecord[] = []
    firsts.forEach((first, i) => {
      if (first === null) return void fresh.push(i)
      results[i] = { id: first.id, duplicate: true }
      if (first.task === null && !unqueued.some((r) => r.id === first.id)) unqueued.push(first)
    })
    const records = fresh.map((i) => inboundRecord(entries[i]!))
    // Built before anything is written: a payload the queue refuses fails the op, not half of it.
    const tasks = [...records, ...unqueued].map(handoffTask)

    // 2. Records and dedupe records: older than the window (or its record gone), the dedupe key is taken over.
    const written = fresh.map(async (i, n) => {
      const mine: DedupeRecord = { id: entries[i]!.id, at: entries[i]!.at }
      const bytes = entries[i]!.bytes
      const [, won] = await Promise.all([
        datastore.put(KIND, inboundRecordKey(mine.id), records[n] as unknown as DatastoreValue),
        datastore.putIf(KIND, keys[i]!, mine as unknown as DatastoreValue, seen[i] === null ? null : { id: seen[i]!.id }),
        bytes === undefined ? null : datastore.put(KIND, inboundRawKey(mine.id), { bytes }),
      ])
      return won
    })
    // A copy that lost its dedupe key: its record and bytes go.
    const drop = (r: InboundRecord) => Promise.all([datastore.delete(KIND, inboundRecordKey(r.id)), r.raw.store === 'ds' ? datastore.delete(KIND, inboundRawKey(r.id)) : null])
    const all = [...records, ...unqueued]
    let taken: boolean[]
    let queued: (string | null)[]
    if (queue.enqueueWhen !== undefined) {
      // 3. with 2: the tasks are written beside the records (the queue's environment commits in parallel) and handed
      // out only once their records committed; a lost copy's record goes first, then its task (never handed).
      const settled = written.map((w, n) => w.then(async (won) => (won ? true : (await drop(records[n]!), false))))
      // Taking over an expired key can lose to the sweep dropping it (seed/mail-inbound-sweep.ts): that task is written once won.
      const enqueued = tasks.map((task, n) => n >= records.length ? queue.enqueue(task)
        : seen[fresh[n]!] === null ? queue.enqueueWhen!(task, settled[n]!)
          : settled[n]!.then((won) => (won ? queue.enqueue(task) : null)))
      ;[taken, queued] = await Promise.all([Promise.all(settled), Promise.all(enqueued)])
    } else {
      // 3. after 2: the handoffs, new (once their dedupe key is taken) and unqueued firsts.
      taken = await Promise.all(written)
      queued = await Promise.all(tasks.map((task, n) => (n < records.length && !taken[n] ? null : queue.enqueue(task))))
      await Promise.all(all.map((r, n) => (queued[n] === null ? drop(r) : null)))
    }
    // 4. Each record names its task, unless an app node already claimed it for the task it leased (roles/app/mail-handoff.ts):
    // whichever task the record names is the one that hands the message, the other is settled without running.
    const note = () => Promise.all(all.map((r, n) =>
      queued[n] === null ? null : datastore.putIf(KIND, inboundRecordKey(r.id), { ...r, task: queued[n] } as unknown as DatastoreValue, { task: null })))
    fresh.forEach((i, n) => {
      results[i] = taken[n]
        ? { id: entries[i]!.id, duplicate: false }
        : { error: { code: 'ESPRA_ERR_MAIL_NOT_DURABLE', message: 'a concurrent retry of the same message took it first' } }
    })
    return { results, note }
  }

  /** Runs `record` over the entries whose keys no other group holds; the rest wait for theirs, then go one by one. */
  async function commit(entries: readonly InboundEntry[], windowMs: number): Promise<InboundResult[]> {
    const keys = entries.map((e) => dedupeKey(e.messageId, e.raw.sha256, e.envelope.to))
    const mine: number[] = []
    const later: number[] = []
    const held = new Set<string>()
    keys.forEach((k, i) => {
      if (busy.has(k) || held.has(k)) return void later.push(i)
      held.add(k)
      mine.push(i)
    })
    const results: InboundResult[] = new Array(entries.length)
    let noting: Promise<unknown> = Promise.resolve()
    let release!: () => void
    const done = new Promise<void>((resolve) => (release = resolve))
    for (const k of held) busy.set(k, done)
    try {
      const got = await record(mine.map((i) => entries[i]!), mine.map((i) => keys[i]!), windowMs)
      await flushed()
      // Step 4 after the flush, not waited for by the answer; the dedupe keys stay held until it has committed (a retry then finds the task named).
      noting = got.note()
      mine.forEach((i, n) => (results[i] = got.results[n]!))
    } finally {
      void noting.catch(() => undefined).finally(() => {
        for (const k of held) busy.delete(k)
        release()
      })
    }
    for (const i of later) {
      for (let other = busy.get(keys[i]!); other !== undefined; other = busy.get(keys[i]!)) await other
      results[i] = (await commit([entries[i]!], windowMs))[0]!
    }
    return results
  }

  return [
    ['mail.inbound.commit', async (body) => {
      const batch = checkInboundBatch(body)
      // The sweep keeps every message at least the longest window a mail node asked for (seed/mail-inbound-sweep.ts).
      windowSeen(batch.windowMs)
      try {
        return { results: await commit(batch.entries, batch.windowMs) }
      } catch (err) {
        const e = err as EspraError
        if (e.code !== 'ESPRA_ERR_TASK_INVALID') throw err
        // The task checker's refusal in the same words (its details kept), under the meta port's code.
        const { field, allowed } = e.details as { field: string; allowed: string }
        throw createError('ESPRA_ERR_META_BAD_REQUEST', { ...e.details, field, reason: `must be ${allowed}` })
      }
    }],
  ]
}
