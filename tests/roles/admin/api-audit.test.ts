// The audit log's keys against a real seed's datastore: newest first in one range scan, pages with `before`, and
// the retention sweep deleting exactly the entries older than the cutoff (and the idempotency sweep those past 24 h).
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { listAudit, sweepAudit, writeAudit, type AuditEntry } from '../../../roles/admin/api-audit.js'
import { sweepIdempotency } from '../../../roles/admin/api-idempotency.js'
import { client, startTestSeed } from '../../helpers/seed.js'

const { port } = await startTestSeed(t)
const link = client(t, port)
await link.ready
const ds = createDatastoreClient(link)
const DAY = 24 * 3_600_000
const NOW = Date.UTC(2026, 11, 3, 7, 0, 0)

const entry = (at: number, action: string): Omit<AuditEntry, 'id'> => ({
  at, operator: 'ops', role: 'operator', action, target: null, params: {}, address: '127.0.0.1', outcome: 'ok', status: 200,
})

t.test('newest first, paged with before; the sweep deletes exactly what is older than the retention', async (t) => {
  // Written out of time order: the keys order them.
  for (const [days, action] of [[3, 'c'], [100, 'old-1'], [0, 'a'], [91, 'old-2'], [1, 'b'], [89, 'd']] as const) await writeAudit(ds, entry(NOW - days * DAY, action))
  const all = await listAudit(ds, { limit: 100 })
  t.same(all.entries.map((e) => e.action), ['a', 'b', 'c', 'd', 'old-2', 'old-1'])
  t.equal(all.next, null)
  const first = await listAudit(ds, { limit: 2 })
  t.same(first.entries.map((e) => e.action), ['a', 'b'])
  const second = await listAudit(ds, { limit: 2, before: first.next! })
  t.same(second.entries.map((e) => e.action), ['c', 'd'])
  t.equal(await sweepAudit(ds, 90 * DAY, NOW), 2, 'the two entries past 90 days')
  t.same((await listAudit(ds, { limit: 100 })).entries.map((e) => e.action), ['a', 'b', 'c', 'd'])
  t.equal(await sweepAudit(ds, 90 * DAY, NOW), 0, 'nothing more to sweep')
})

t.test('idempotency records past 24 h are swept, younger ones kept', async (t) => {
  await ds.put('adminIdempotency', 'ops/old', { state: 'done', request: 'x', at: NOW - 25 * 3_600_000, status: 200, answer: '{}' })
  await ds.put('adminIdempotency', 'ops/new', { state: 'done', request: 'x', at: NOW - 3_600_000, status: 200, answer: '{}' })
  t.equal(await sweepIdempotency(ds, NOW), 1)
  t.equal(await ds.get('adminIdempotency', 'ops/old'), null)
  t.not(await ds.get('adminIdempotency', 'ops/new'), null)
})
