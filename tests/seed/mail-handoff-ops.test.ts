// mail.inbound.claim(s) and mail.inbound.outcome(s) against the seed's real embedded datastore (LMDB in a temp directory),
// and the app child's client of them over a seed that knows only the single ops, or none (the single ds ops, same results).
import t, { type Test } from 'tap'
import { createError } from '../../lib/core/errors.js'
import { inboundRawKey, inboundRecordKey, rawMailKey } from '../../lib/mail/inbound.js'
import type { InboundRecord } from '../../lib/mail/inbound-record.js'
import type { DatastoreValue } from '../../lib/storage/datastore.js'
import type { MetaPeer } from '../../lib/transport/meta-server.js'
import { createMailHandoffOps, type MailHandoffOps } from '../../roles/app/mail-handoff-ops.js'
import { openEmbeddedDatastore } from '../../seed/datastore-embedded.js'
import { mailHandoffHandlers } from '../../seed/mail-handoff-ops.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { newTask } from '../../lib/tasks/task.js'
import { testDir } from '../helpers/temp-dir.js'

let n = 0
type SeedKnows = 'batched' | 'single' | 'none'

async function open(t: Test) {
  const dir = testDir('espra-mail-handoff-ops-')
  const datastore = await openEmbeddedDatastore({ dir })
  const queue = await openEmbeddedTaskQueue({ dir })
  t.teardown(async () => {
    await queue.close()
    await datastore.close()
  })
  const handlers = new Map(mailHandoffHandlers(datastore, { queue }))
  const sent: string[] = []
  const call = async (op: string, body: unknown) => {
    sent.push(op)
    return handlers.get(op)!(body, {} as MetaPeer)
  }
  /** The app child's client: over the seed's ops (`knows`: which; the others answered ESPRA_ERR_META_UNKNOWN_OP as a seed of an earlier version does). */
  const client = (knows: SeedKnows, maxFrame?: number): MailHandoffOps => createMailHandoffOps({
    request: async <R>(op: string, body: unknown) => {
      const batch = op.endsWith('s')
      if (knows === 'none' || (knows === 'single' && batch)) throw createError('ESPRA_ERR_META_UNKNOWN_OP', { op })
      return (await call(op, body)) as R
    },
  }, datastore, maxFrame)
  /** A recorded message (`inline`: its bytes a datastore record), naming `task`. */
  async function recorded(task: string | null, inline = true): Promise<InboundRecord> {
    const at = Date.now()
    const id = `m${at.toString(36)}${(++n).toString(16).padStart(12, '0')}`
    const record: InboundRecord = {
      id, raw: { key: rawMailKey(id, at), size: 5, sha256: '0'.repeat(64), ...(inline ? { store: 'ds' as const } : {}) },
      envelope: { from: 'a@x.test', to: ['b@y.test'], remoteAddress: '192.0.2.1', helo: 'x.test' }, messageId: null, at, auth: null, task,
    }
    await datastore.put('mailInbound', inboundRecordKey(id), record as unknown as DatastoreValue)
    if (inline) await datastore.put('mailInbound', inboundRawKey(id), { bytes: new TextEncoder().encode('hello') })
    return record
  }
  const read = async (id: string) => (await datastore.get('mailInbound', inboundRecordKey(id))) as unknown as InboundRecord | null
  return { datastore, queue, call, client, recorded, read, sent }
}

for (const seedKnowsOps of ['batched', 'single', 'none'] as const) {
  const way = { batched: 'the seed\'s batched ops', single: 'the single ops (a seed without the batched ones)', none: 'the single ds ops (a seed without the ops)' }[seedKnowsOps]

  t.test(`the claim: once per message, with a small message's bytes (${way})`, async (t) => {
    const { client, recorded, read, datastore } = await open(t)
    const ops = client(seedKnowsOps)
    const fresh = await recorded(null)
    const claim = await ops.claim(fresh.id, 't5')
    t.same(claim, { bytes: new TextEncoder().encode('hello') }, 'the first task claims it and gets the raw bytes')
    t.equal((await read(fresh.id))?.task, 't5', 'the record names the task that claimed it')
    t.same(await ops.claim(fresh.id, 't5'), claim, 'the same task again (its attempt 2, or a resent claim) hands it')
    t.match(await ops.claim(fresh.id, 't6'), { skip: /is handed by task t5/ }, 'another task of the message is skipped')
    t.equal((await read(fresh.id))?.task, 't5', 'and does not take the record over')

    t.same(await ops.claim((await recorded('t7')).id, 't7'), { bytes: new TextEncoder().encode('hello') }, 'a record already naming the task')
    t.same(await ops.claim((await recorded(null, false)).id, 't8'), {}, 'a message in the blob store: no bytes')
    const gone = await recorded(null)
    await datastore.delete('mailInbound', inboundRawKey(gone.id))
    t.same(await ops.claim(gone.id, 't9'), { bytes: null }, 'bytes whose record is gone: null (the parse then fails ESPRA_ERR_MAIL_HANDOFF)')
    t.match(await ops.claim('m0000000000000000000001', 't10'), { skip: /has no record/ }, 'a message with no record (swept) is skipped')
  })

  t.test(`the outcome: noted on the record of the task that hands it (${way})`, async (t) => {
    const { client, recorded, read } = await open(t)
    const ops = client(seedKnowsOps)
    const r = await recorded('t3')
    t.equal(await ops.outcome({ id: r.id, task: 't3', attempt: 1, result: 'failed', error: 'x'.repeat(5000) }), true)
    t.match(await read(r.id), { task: 't3', attempts: 1, lastError: 'x'.repeat(1000), failedAt: Number })
    t.equal(await ops.outcome({ id: r.id, task: 't3', attempt: 2, result: 'done' }), true)
    t.match(await read(r.id), { task: 't3', attempts: 2, handledAt: Number })
    t.equal(await ops.outcome({ id: r.id, task: 't4', attempt: 1, result: 'done' }), false, 'another task\'s outcome is not noted')
    t.equal((await read(r.id))?.attempts, 2)
    const unnamed = await recorded(null)
    t.equal(await ops.outcome({ id: unnamed.id, task: 't11', attempt: 1, result: 'done' }), true, 'a record naming no task yet is noted, naming the task')
    t.equal((await read(unnamed.id))?.task, 't11')
    t.equal(await ops.outcome({ id: 'm0000000000000000000001', task: 't1', attempt: 1, result: 'done' }), false, 'no record: nothing noted')
  })
}

t.test('the claims and outcomes of one turn are one request each; under a small frame, fewer claims per request', async (t) => {
  const { client, recorded, read, sent } = await open(t)
  const ops = client('batched')
  const rs = await Promise.all(Array.from({ length: 20 }, () => recorded(null)))
  const claims = await Promise.all(rs.map((r, i) => ops.claim(r.id, `t${i + 1}`)))
  t.same(claims, rs.map(() => ({ bytes: new TextEncoder().encode('hello') })), 'each claim answered in order')
  t.same(sent, ['mail.inbound.claims', 'mail.inbound.claims'], '20 claims: 16 and 4')
  sent.length = 0
  const noted = await Promise.all(rs.map((r, i) => ops.outcome({ id: r.id, task: `t${i + 1}`, attempt: 1, result: i === 0 ? 'failed' : 'done', ...(i === 0 ? { error: 'boom' } : {}) })))
  t.same(noted, rs.map(() => true))
  t.same(sent, ['mail.inbound.outcomes'])
  t.match(await read(rs[0]!.id), { task: 't1', attempts: 1, lastError: 'boom' })
  t.match(await read(rs[19]!.id), { task: 't20', attempts: 1, handledAt: Number })
  sent.length = 0
  const small = client('batched', 64 * 1024 + 3 * 50 * 1024)
  await Promise.all(rs.slice(0, 7).map((r, i) => small.claim(r.id, `t${i + 1}`)))
  t.same(sent, ['mail.inbound.claims', 'mail.inbound.claims', 'mail.inbound.claims'], 'room for 3 answers of 48 KB in the frame: 3, 3 and 1')
  sent.length = 0
  const old = client('single')
  await Promise.all([old.claim(rs[0]!.id, 't1'), old.claim(rs[1]!.id, 't2')])
  await old.claim(rs[2]!.id, 't3')
  t.same(sent, ['mail.inbound.claim', 'mail.inbound.claim', 'mail.inbound.claim'], 'a seed without the batched ops: the single ops, and the batched one is not tried again')
})

t.test('an outcome with its settlement: noted and the task settled in one op; a seed without the list ops leaves the settle to the caller', async (t) => {
  const { client, recorded, read, sent, queue } = await open(t)
  const ops = client('batched')
  await queue.enqueue(newTask('espra.mail', new Uint8Array([1]), { attempts: 3 }))
  await queue.enqueue(newTask('espra.mail', new Uint8Array([2]), { attempts: 3 }))
  const [a, b] = await queue.lease({ max: 2, leaseMs: 60_000 })
  const ra = await recorded(a!.id)
  const rb = await recorded(b!.id)
  const finished = await Promise.all([
    ops.finish({ id: ra.id, task: a!.id, attempt: 1, result: 'done' }, { id: a!.id, attempt: 1, result: 'done' }),
    ops.finish({ id: rb.id, task: b!.id, attempt: 1, result: 'failed', error: 'boom' }, { id: b!.id, attempt: 1, result: 'failed', error: 'boom', retryInMs: 60_000 }),
  ])
  t.same(finished, [{ noted: true, settled: true, lost: false }, { noted: true, settled: true, lost: false }])
  t.same(sent, ['mail.inbound.outcomes'], 'one op for both notes and both settlements')
  t.match(await read(ra.id), { handledAt: Number })
  t.match(await queue.counts(), { ready: 0, leased: 0, delayed: 1 }, 'the done task is gone, the failed one waits for its retry')
  sent.length = 0
  t.same(await ops.finish({ id: ra.id, task: a!.id, attempt: 1, result: 'done' }, { id: a!.id, attempt: 1, result: 'done' }), { noted: true, settled: true, lost: true }, 'a settlement past its lease: lost')
  const old = client('single')
  t.same(await old.finish({ id: ra.id, task: a!.id, attempt: 1, result: 'done' }, { id: a!.id, attempt: 1, result: 'done' }), { noted: true, settled: false, lost: false }, 'a seed without the list ops: noted, not settled')
})

t.test('bad bodies are refused naming the field, and nothing is written', async (t) => {
  const { call, recorded, read } = await open(t)
  const r = await recorded(null)
  const refused: [string, unknown, string][] = [
    ['mail.inbound.claim', 'x', 'body'],
    ['mail.inbound.claim', { id: 'in/x', task: 't1' }, 'id'],
    ['mail.inbound.claim', { id: r.id, task: 'x1' }, 'task'],
    ['mail.inbound.claim', { id: r.id }, 'task'],
    ['mail.inbound.outcome', [], 'body'],
    ['mail.inbound.outcome', { id: r.id, task: 't1', attempt: 0, result: 'done' }, 'attempt'],
    ['mail.inbound.outcome', { id: r.id, task: 't1', attempt: 1.5, result: 'done' }, 'attempt'],
    ['mail.inbound.outcome', { id: r.id, task: 't1', attempt: 1, result: 'ok' }, 'result'],
    ['mail.inbound.outcome', { id: r.id, task: 't1', attempt: 1, result: 'failed' }, 'error'],
    ['mail.inbound.outcome', { id: r.id, task: 't1', attempt: 1, result: 'done', error: 'x' }, 'error'],
    ['mail.inbound.claims', { id: r.id, task: 't1' }, 'claims'],
    ['mail.inbound.claims', { claims: [] }, 'claims'],
    ['mail.inbound.claims', { claims: Array.from({ length: 17 }, () => ({ id: r.id, task: 't1' })) }, 'claims'],
    ['mail.inbound.claims', { claims: [{ id: r.id, task: 't1' }, { id: r.id, task: 'x' }] }, 'claims.1.task'],
    ['mail.inbound.claims', { claims: [7] }, 'claims.0'],
    ['mail.inbound.outcomes', { outcomes: [{ id: r.id, task: 't1', attempt: 1, result: 'done' }, { id: r.id, task: 't1', attempt: 0, result: 'done' }] }, 'outcomes.1.attempt'],
    ['mail.inbound.outcomes', 'x', 'body'],
    ['mail.inbound.outcomes', { outcomes: [{ id: r.id, task: 't1', attempt: 1, result: 'done' }], settle: [] }, 'settle'],
    ['mail.inbound.outcomes', { outcomes: [{ id: r.id, task: 't1', attempt: 1, result: 'done' }], settle: { results: [{ id: 't1', attempt: 1, result: 'maybe' }] } }, 'settle.results[0].result'],
    ['mail.inbound.outcomes', { outcomes: [{ id: r.id, task: 't1', attempt: 1, result: 'done' }], settle: { results: [], opId: '!' } }, 'settle.opId'],
  ]
  for (const [op, body, field] of refused) {
    await t.rejects(Promise.resolve().then(() => call(op, body)), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, `${op} ${JSON.stringify(body)}`)
  }
  t.equal((await read(r.id))?.task, null, 'the record is untouched')
})
