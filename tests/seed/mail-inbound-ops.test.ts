// mail.inbound.commit against the seed's real embedded datastore and task queue (LMDB in a temp directory).
import t, { type Test } from 'tap'
import { dedupeKey, inboundRawKey, inboundRecordKey, rawMailKey } from '../../lib/mail/inbound.js'
import type { InboundEntry } from '../../lib/mail/inbound-batch.js'
import { decodePayload } from '../../lib/tasks/task.js'
import type { Datastore } from '../../lib/storage/datastore.js'
import type { MetaPeer } from '../../lib/transport/meta-server.js'
import { openEmbeddedDatastore } from '../../seed/datastore-embedded.js'
import { mailInboundHandlers } from '../../seed/mail-inbound-ops.js'
import { openEmbeddedTaskQueue } from '../../seed/tasks-embedded.js'
import { testDir } from '../helpers/temp-dir.js'

async function open(t: Test) {
  const dir = testDir('espra-mail-inbound-ops-')
  const datastore = await openEmbeddedDatastore({ dir })
  const queue = await openEmbeddedTaskQueue({ dir })
  t.teardown(async () => {
    await queue.close()
    await datastore.close()
  })
  const handler = new Map(mailInboundHandlers(datastore, queue)).get('mail.inbound.commit')!
  const commit = (body: unknown) => handler(body, {} as MetaPeer) as Promise<{ results: ({ id: string; duplicate: boolean } | { error: { code: string } })[] }>
  return { datastore, queue, commit }
}

/** The record once it names its task: step 4 is written after the op answers. */
async function named(datastore: Datastore, id: string): Promise<Record<string, unknown> | null> {
  for (let i = 0; i < 100; i++) {
    const rec = await datastore.get('mailInbound', inboundRecordKey(id))
    if (rec === null || rec['task'] !== null) return rec
    await new Promise((r) => setTimeout(r, 50))
  }
  return datastore.get('mailInbound', inboundRecordKey(id))
}

const VERIFY = { timeoutMs: 5000, dnsServers: ['127.0.0.1:5353'], mta: 'mx.example.test' }

let n = 0
function entry(messageId: string | null, over: Partial<InboundEntry> = {}): InboundEntry {
  const at = Date.now()
  const id = `m${at.toString(36)}${(++n).toString(16).padStart(12, '0')}`
  const sha256 = (messageId ?? 'none').padEnd(64, '0').replace(/[^0-9a-f]/g, 'a').slice(0, 64)
  return {
    id, at, raw: { key: rawMailKey(id, at), size: 100, sha256 },
    envelope: { from: 'a@sender.test', to: ['b@example.test'], remoteAddress: '127.0.0.1', helo: 'client.test' },
    messageId, auth: null, ...over,
  }
}

t.test('a group is recorded and queued; retries in the same group or a later one get the first id and are not queued again', async (t) => {
  const { datastore, queue, commit } = await open(t)
  const [a, b, aAgain] = [entry('a@x'), entry('b@x'), entry('a@x')]
  const { results } = await commit({ windowMs: 60_000, entries: [a, b, aAgain] })
  t.same(results, [{ id: a.id, duplicate: false }, { id: b.id, duplicate: false }, { id: a.id, duplicate: true }])
  const rec = await named(datastore, a.id)
  t.match(rec, { id: a.id, raw: a.raw, envelope: a.envelope, messageId: 'a@x', task: /^t\d+$/ }, 'the record names its task (written after the answer)')
  t.equal(await datastore.get('mailInbound', inboundRecordKey(aAgain.id)), null, 'no record for the copy')
  t.same(await datastore.get('mailInbound', dedupeKey('a@x', a.raw.sha256, a.envelope.to)), { id: a.id, at: a.at })
  t.equal((await queue.counts()).ready, 2, 'two handoffs queued')
  const later = await commit({ windowMs: 60_000, entries: [entry('a@x')] })
  t.same(later.results, [{ id: a.id, duplicate: true }])
  t.equal((await queue.counts()).ready, 2, 'still two')
  const outside = entry('a@x')
  const past = await commit({ windowMs: 0, entries: [outside] })
  t.same(past.results, [{ id: outside.id, duplicate: false }], 'past the window the same message is new again')
})

t.test('a first attempt that died before its task was queued gets it queued by the retry', async (t) => {
  const { datastore, queue, commit } = await open(t)
  const first = entry('lost@x')
  await datastore.put('mailInbound', inboundRecordKey(first.id), { id: first.id, raw: first.raw, envelope: first.envelope, messageId: 'lost@x', at: first.at, auth: null, task: null })
  await datastore.put('mailInbound', dedupeKey('lost@x', first.raw.sha256, first.envelope.to), { id: first.id, at: first.at })
  const { results } = await commit({ windowMs: 60_000, entries: [entry('lost@x')] })
  t.same(results, [{ id: first.id, duplicate: true }])
  t.match(await named(datastore, first.id), { task: /^t\d+$/ }, 'the record names its task (written after the answer)')
  t.equal((await queue.counts()).ready, 1)
})

t.test('concurrent groups holding the same dedupe key: one takes it, the other finds it', async (t) => {
  const { queue, commit } = await open(t)
  const [x, y] = [entry('same@x'), entry('same@x')]
  const [rx, ry] = await Promise.all([commit({ windowMs: 60_000, entries: [x] }), commit({ windowMs: 60_000, entries: [y] })])
  t.same([rx.results[0], ry.results[0]], [{ id: x.id, duplicate: false }, { id: x.id, duplicate: true }])
  t.equal((await queue.counts()).ready, 1)
})

t.test('every entry is checked; one bad entry refuses the whole group and nothing is written', async (t) => {
  const { queue, commit } = await open(t)
  const good = entry('g@x')
  const cases: [unknown, string][] = [
    [null, 'body'],
    [{ windowMs: -1, entries: [good] }, 'windowMs'],
    [{ windowMs: 1000, entries: [] }, 'entries'],
    [{ windowMs: 1000, entries: Array.from({ length: 257 }, () => good) }, 'entries'],
    [{ windowMs: 1000, entries: [good, good] }, 'entries[1].id'],
    [{ windowMs: 1000, entries: [good, { ...entry('h@x'), id: '../etc' }] }, 'entries[1].id'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, key: 'builds/x' } }] }, 'entries[0].raw.key'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, sha256: 'XYZ' } }] }, 'entries[0].raw.sha256'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, size: -1 } }] }, 'entries[0].raw.size'],
    [{ windowMs: 1000, entries: [{ ...good, at: 5 }] }, 'entries[0].at'],
    [{ windowMs: 1000, entries: [{ ...good, envelope: { ...good.envelope, to: [] } }] }, 'entries[0].envelope.to'],
    [{ windowMs: 1000, entries: [{ ...good, envelope: { ...good.envelope, to: Array.from({ length: 251 }, () => 'a@b.c') } }] }, 'entries[0].envelope.to'],
    [{ windowMs: 1000, entries: [{ ...good, envelope: { ...good.envelope, to: ['a@b\r\nX: y'] } }] }, 'entries[0].envelope.to[0]'],
    [{ windowMs: 1000, entries: [{ ...good, envelope: { ...good.envelope, from: 'x'.repeat(321) } }] }, 'entries[0].envelope.from'],
    [{ windowMs: 1000, entries: [{ ...good, messageId: 7 }] }, 'entries[0].messageId'],
    [{ windowMs: 1000, entries: [{ ...good, auth: { spf: {} } }] }, 'entries[0].auth.spf'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, store: 's3' } }] }, 'entries[0].raw.store'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, store: 'ds' } }] }, 'entries[0].bytes'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, store: 'ds' }, bytes: new Uint8Array(99) }] }, 'entries[0].bytes'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, store: 'ds' }, bytes: 'x'.repeat(100) }] }, 'entries[0].bytes'],
    [{ windowMs: 1000, entries: [{ ...good, raw: { ...good.raw, store: 'ds', size: 48 * 1024 + 1 }, bytes: new Uint8Array(48 * 1024 + 1) }] }, 'entries[0].bytes'],
    [{ windowMs: 1000, entries: [{ ...good, bytes: new Uint8Array(100) }] }, 'entries[0].bytes'],
    [{ windowMs: 1000, entries: [{ ...good, envelope: { ...good.envelope, helo: 'h'.repeat(1000), to: Array.from({ length: 250 }, (_, i) => `${'r'.repeat(300)}${i}@example.test`) } }] }, 'entries[0]'],
    [{ windowMs: 1000, entries: [{ ...good, verify: 'yes' }] }, 'entries[0].verify'],
    [{ windowMs: 1000, entries: [{ ...good, verify: { ...VERIFY, timeoutMs: 10 } }] }, 'entries[0].verify.timeoutMs'],
    [{ windowMs: 1000, entries: [{ ...good, verify: { ...VERIFY, dnsServers: '127.0.0.1' } }] }, 'entries[0].verify.dnsServers'],
    [{ windowMs: 1000, entries: [{ ...good, verify: { ...VERIFY, dnsServers: ['1.1.1.1\r\n'] } }] }, 'entries[0].verify.dnsServers[0]'],
    [{ windowMs: 1000, entries: [{ ...good, verify: { ...VERIFY, mta: '' } }] }, 'entries[0].verify.mta'],
    [{ windowMs: 1000, entries: [{ ...good, verify: VERIFY, auth: { spf: { result: 'pass' }, dkim: { result: 'none' }, dmarc: { result: 'none' }, arc: { result: 'none' }, header: 'x' } }] }, 'entries[0].verify'],
  ]
  for (const [body, field] of cases) {
    await t.rejects(commit(body), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field } }, field)
  }
  t.equal((await queue.counts()).ready, 0, 'nothing queued')
})

t.test('a message to verify at the handoff: the record and the task carry the mail node\'s settings, with auth null', async (t) => {
  const { datastore, queue, commit } = await open(t)
  const [later, verified] = [{ ...entry('v@x'), verify: VERIFY }, entry('n@x')]
  t.same((await commit({ windowMs: 60_000, entries: [later, verified] })).results, [{ id: later.id, duplicate: false }, { id: verified.id, duplicate: false }])
  t.match(await named(datastore, later.id), { auth: null, verify: VERIFY }, 'the record says how to verify it')
  t.notOk('verify' in (await named(datastore, verified.id))!, 'a message without verify has none on its record')
  const payloads = (await queue.lease({ max: 10, leaseMs: 60_000, waitMs: 0 })).map((task) => decodePayload(task.payload) as Record<string, unknown>)
  t.match(payloads.find((p) => p['id'] === later.id), { auth: null, verify: VERIFY }, 'so does its task')
  t.notOk('verify' in payloads.find((p) => p['id'] === verified.id)!, 'the other task has no verify')
})

t.test('the bytes of a small message ride in its entry: written beside its record in the same flush; the copy of a retry is not written', async (t) => {
  const { datastore, queue, commit } = await open(t)
  const bytes = Buffer.from('Subject: small\r\n\r\n' + 'x'.repeat(100))
  const small = (mid: string) => {
    const e = entry(mid)
    return { ...e, raw: { ...e.raw, size: bytes.length, store: 'ds' as const }, bytes }
  }
  const [a, aAgain, blob] = [small('s@x'), small('s@x'), entry('blob@x')]
  const { results } = await commit({ windowMs: 60_000, entries: [a, aAgain, blob] })
  t.same(results, [{ id: a.id, duplicate: false }, { id: a.id, duplicate: true }, { id: blob.id, duplicate: false }])
  const raw = await datastore.get('mailInbound', inboundRawKey(a.id))
  t.same(Buffer.from(raw!['bytes'] as Uint8Array), bytes, 'the bytes are the datastore record raw/<id>')
  t.match(await datastore.get('mailInbound', inboundRecordKey(a.id)), { raw: { store: 'ds', size: bytes.length } }, 'the record says where they are')
  t.notOk('bytes' in (await datastore.get('mailInbound', inboundRecordKey(a.id)))!, 'the record itself does not carry them')
  t.equal(await datastore.get('mailInbound', inboundRawKey(aAgain.id)), null, 'nothing of the retry')
  t.equal(await datastore.get('mailInbound', inboundRawKey(blob.id)), null, 'nothing for a message in the blob store')
  t.equal((await queue.counts()).ready, 2)
})

t.test('a copy that loses its dedupe key to a write the op did not hold: its record and bytes go, its task is never handed, not even after a restart', async (t) => {
  const dir = testDir('espra-mail-inbound-ops-')
  const datastore = await openEmbeddedDatastore({ dir })
  let queue = await openEmbeddedTaskQueue({ dir })
  t.teardown(async () => {
    await queue.close()
    await datastore.close()
  })
  const handler = new Map(mailInboundHandlers(datastore, queue)).get('mail.inbound.commit')!
  const bytes = Buffer.from('Subject: race\r\n\r\nx')
  const e = entry('race@x')
  const x = { ...e, raw: { ...e.raw, size: bytes.length, store: 'ds' as const }, bytes }
  const answer = handler({ windowMs: 60_000, entries: [x] }, {} as MetaPeer) as Promise<{ results: unknown[] }>
  // Written in the same tick as the op's first read, so before its compare-and-set (the sweep or another writer could do this).
  await datastore.put('mailInbound', dedupeKey('race@x', x.raw.sha256, x.envelope.to), { id: 'someone-else', at: x.at })
  t.match((await answer).results, [{ error: { code: 'ESPRA_ERR_MAIL_NOT_DURABLE' } }], 'no 250 for it')
  t.equal(await datastore.get('mailInbound', inboundRecordKey(x.id)), null, 'its record went')
  t.equal(await datastore.get('mailInbound', inboundRawKey(x.id)), null, 'its bytes went')
  t.same(await queue.lease({ max: 10, leaseMs: 60_000, waitMs: 0 }), [], 'its task was never handed out')
  await queue.close()
  queue = await openEmbeddedTaskQueue({ dir })
  t.same(await queue.lease({ max: 10, leaseMs: 60_000, waitMs: 0 }), [], 'nor is it there after a restart')
})
