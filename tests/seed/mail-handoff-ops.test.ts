// mail.inbound.claim and mail.inbound.outcome against the seed's real embedded datastore (LMDB in a temp directory),
// and the app child's client of them over a seed that does not know them (the single ds ops, same results).
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createError } from '../../lib/core/errors.js'
import { inboundRawKey, inboundRecordKey, rawMailKey } from '../../lib/mail/inbound.js'
import type { InboundRecord } from '../../lib/mail/inbound-record.js'
import type { DatastoreValue } from '../../lib/storage/datastore.js'
import type { MetaPeer } from '../../lib/transport/meta-server.js'
import { createMailHandoffOps, type MailHandoffOps } from '../../roles/app/mail-handoff-ops.js'
import { openEmbeddedDatastore } from '../../seed/datastore-embedded.js'
import { mailHandoffHandlers } from '../../seed/mail-handoff-ops.js'

let n = 0

async function open(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'espra-mail-handoff-ops-'))
  const datastore = await openEmbeddedDatastore({ dir })
  t.teardown(() => datastore.close())
  const handlers = new Map(mailHandoffHandlers(datastore))
  const sent: string[] = []
  const call = async (op: string, body: unknown) => {
    sent.push(op)
    return handlers.get(op)!(body, {} as MetaPeer)
  }
  /** The app child's client: over the seed's ops, or over a seed that answers them ESPRA_ERR_META_UNKNOWN_OP. */
  const client = (seedKnowsOps: boolean): MailHandoffOps => createMailHandoffOps({
    request: async <R>(op: string, body: unknown) => {
      if (!seedKnowsOps) throw createError('ESPRA_ERR_META_UNKNOWN_OP', { op })
      return (await call(op, body)) as R
    },
  }, datastore)
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
  return { datastore, call, client, recorded, read, sent }
}

for (const seedKnowsOps of [true, false]) {
  const way = seedKnowsOps ? 'the seed\'s ops' : 'the single ds ops (a seed without the ops)'

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

t.test('each op is one request to the seed', async (t) => {
  const { client, recorded, sent } = await open(t)
  const ops = client(true)
  const r = await recorded(null)
  await ops.claim(r.id, 't1')
  await ops.outcome({ id: r.id, task: 't1', attempt: 1, result: 'done' })
  t.same(sent, ['mail.inbound.claim', 'mail.inbound.outcome'])
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
  ]
  for (const [op, body, field] of refused) {
    await t.rejects(Promise.resolve().then(() => call(op, body)), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, `${op} ${JSON.stringify(body)}`)
  }
  t.equal((await read(r.id))?.task, null, 'the record is untouched')
})
