// Op ids (docs/postgres.md, "Op ids"): the same op id sent twice, to one seed and to two seeds on one real
// PostgreSQL database, has its effect once and gets the same answer; two concurrent sends of one op id; expired
// op ids swept; a bad or reused op id refused; the embedded seed remembering op ids in memory.
import t from 'tap'
import { newOpId } from '../../../lib/storage/op-id.js'
import { openPostgres } from '../../../lib/storage/postgres.js'
import { createPostgresDatastore } from '../../../lib/storage/datastore-postgres.js'
import { newTask, type LeasedTask } from '../../../lib/tasks/task.js'
import type { MetaClient } from '../../../lib/transport/meta-client.js'
import { captureLog } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'
import { client, startTestSeed } from '../../helpers/seed.js'

const postgres = await startPostgres(t)
const url = await postgres.createDatabase()
const db = await openPostgres({ url, max: 4, log: captureLog('silent').log })
t.teardown(() => db.close())
const one = await startTestSeed(t, { datastore: url, tasks: 'postgres' })
const two = await startTestSeed(t, { datastore: url, tasks: 'postgres' })
const a = client(t, one.port)
const b = client(t, two.port)
await Promise.all([a.ready, b.ready])

const count = async (sql: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(sql, values)).rows[0]!.n)
const task = (i: number) => ({ ...newTask('n', i, { attempts: 1 }) })

for (const [name, first, second] of [['one seed', a, a], ['two seeds on one database', a, b]] as [string, MetaClient, MetaClient][]) {
  t.test(`${name}: the same op id twice has its effect once and the same answer`, async (t) => {
    const tag = name.replace(/ /g, '-')
    await first.request('ds.put', { kind: 'uploadTokens', key: `tok-${tag}`, value: { user: 'u' } })
    const consume = { kind: 'uploadTokens', key: `tok-${tag}`, opId: newOpId() }
    t.same(await first.request('ds.consume', consume), { value: { user: 'u' } }, 'consume returns the record')
    t.same(await second.request('ds.consume', consume), { value: { user: 'u' } }, 'its repeat returns it again')
    t.same(await first.request('ds.get', { kind: 'uploadTokens', key: `tok-${tag}` }), { value: null }, 'and the record is gone')
    t.same(await second.request('ds.consume', { kind: 'uploadTokens', key: `tok-${tag}`, opId: newOpId() }), { value: null }, 'a new op id finds nothing')

    const putIf = { kind: 'tusUploads', key: `up-${tag}`, value: { offset: 1 }, match: null, opId: newOpId() }
    t.same(await first.request('ds.putIf', putIf), { written: true }, 'putIf writes')
    t.same(await second.request('ds.putIf', putIf), { written: true }, 'its repeat answers the same (its match no longer holds)')
    t.equal(await count(`SELECT version AS n FROM espra_records WHERE kind = 'tusUploads' AND key = $1`, [`up-${tag}`]), 1, 'written once')

    const queue = `tasks`
    const before = await count(`SELECT count(*) AS n FROM espra_tasks WHERE queue = $1`, [queue])
    const enqueue = { ...task(1), opId: newOpId() }
    const { id } = await first.request<{ id: string }>('tasks.enqueue', enqueue)
    t.same(await second.request('tasks.enqueue', enqueue), { id }, 'enqueue: the repeat answers the same id')
    t.equal(await count(`SELECT count(*) AS n FROM espra_tasks WHERE queue = $1`, [queue]), before + 1, 'one task')

    const lease = { max: 5, leaseMs: 60_000, waitMs: 0, opId: newOpId() }
    const leased = await first.request<{ tasks: LeasedTask[] }>('tasks.lease', lease)
    t.same(leased.tasks.map((x) => x.id), [id], 'lease takes the task')
    const again = await second.request<{ tasks: LeasedTask[] }>('tasks.lease', lease)
    t.same(again.tasks.map((x) => [x.id, x.attempt, Buffer.from(x.payload).toString('hex')]), leased.tasks.map((x) => [x.id, x.attempt, Buffer.from(x.payload).toString('hex')]), 'its repeat returns the same tasks')
    t.equal(await count(`SELECT attempt AS n FROM espra_tasks WHERE id = $1`, [id.slice(1)]), 1, 'leased once (one attempt)')

    const fail = { results: [{ id, attempt: 1, result: 'failed', error: 'boom', retryInMs: 0 }], opId: newOpId() }
    t.same(await first.request('tasks.settle', fail), { lost: [] }, 'settle (failed, last attempt: dead)')
    t.same(await second.request('tasks.settle', fail), { lost: [] }, 'its repeat answers the same, not "lost"')
    const retry = { id, opId: newOpId() }
    t.same(await first.request('tasks.retry', retry), { id }, 'retry')
    t.same(await second.request('tasks.retry', retry), { id }, 'its repeat answers the same, not "not found"')
    t.equal(await count(`SELECT attempt AS n FROM espra_tasks WHERE id = $1 AND state = 'r'`, [id.slice(1)]), 0, 'ready once, attempts restored')
    const [last] = (await first.request<{ tasks: LeasedTask[] }>('tasks.lease', { max: 1, leaseMs: 60_000, opId: newOpId() })).tasks
    const done = { results: [{ id, attempt: last!.attempt, result: 'done' }], opId: newOpId() }
    t.same(await first.request('tasks.settle', done), { lost: [] })
    t.same(await second.request('tasks.settle', done), { lost: [] }, 'a repeated done is not "lost"')
    t.equal(await count(`SELECT count(*) AS n FROM espra_tasks WHERE id = $1`, [id.slice(1)]), 0, 'the task is gone')
  })
}

t.test('concurrent sends of one op id, to both seeds at once: applied once, both answered the same', async (t) => {
  for (let i = 0; i < 10; i++) await a.request('ds.put', { kind: 'uploadTokens', key: `race${i}`, value: { i } })
  const consumes = await Promise.all(Array.from({ length: 10 }, (_, i) => {
    const body = { kind: 'uploadTokens', key: `race${i}`, opId: newOpId() }
    return Promise.all([a.request('ds.consume', body), b.request('ds.consume', body)])
  }))
  t.same(consumes, Array.from({ length: 10 }, (_, i) => [{ value: { i } }, { value: { i } }]), 'each consume: the record to both sends')

  const before = await count(`SELECT count(*) AS n FROM espra_tasks WHERE queue = 'mailq'`)
  // Twice to one seed in the same turn (one insert batch) and once to the other.
  const enqueues = await Promise.all(Array.from({ length: 20 }, (_, i) => {
    const body = { ...task(i), opId: newOpId() }
    return Promise.all([a.request<{ id: string }>('mailq.enqueue', body), a.request<{ id: string }>('mailq.enqueue', body), b.request<{ id: string }>('mailq.enqueue', body)])
  }))
  for (const [x, y, z] of enqueues) t.ok(x.id === y.id && y.id === z.id, `one id for all three sends (${x.id})`)
  t.equal(new Set(enqueues.map(([x]) => x.id)).size, 20, 'twenty tasks')
  t.equal(await count(`SELECT count(*) AS n FROM espra_tasks WHERE queue = 'mailq'`), before + 20, 'twenty rows')

  const lease = { max: 20, leaseMs: 60_000, opId: newOpId() }
  const [x, y] = await Promise.all([a.request<{ tasks: LeasedTask[] }>('mailq.lease', lease), b.request<{ tasks: LeasedTask[] }>('mailq.lease', lease)])
  t.equal(x.tasks.length, 20, 'one lease took all twenty')
  t.same(y.tasks.map((z) => z.id), x.tasks.map((z) => z.id), 'the other send answered the same tasks')
  t.equal(await count(`SELECT count(*) AS n FROM espra_tasks WHERE queue = 'mailq' AND state = 'l' AND attempt = 1`), 20, 'each leased once')
})

t.test('a lease that found nothing is not remembered: its repeat leases what came since', async (t) => {
  const lease = { max: 1, leaseMs: 60_000, opId: newOpId() }
  const q = `tasks`
  // Drain what earlier tests left ready.
  while ((await a.request<{ tasks: LeasedTask[] }>(`${q}.lease`, { max: 1000, leaseMs: 60_000 })).tasks.length > 0);
  t.same(await a.request(`${q}.lease`, lease), { tasks: [] }, 'nothing ready')
  const { id } = await a.request<{ id: string }>(`${q}.enqueue`, task(7))
  t.same((await b.request<{ tasks: LeasedTask[] }>(`${q}.lease`, lease)).tasks.map((x) => x.id), [id], 'the repeat takes the new task')
})

t.test('a bad op id, or one reused for another op, is refused', async (t) => {
  await t.rejects(a.request('ds.consume', { kind: 'uploadTokens', key: 'k', opId: 'short' }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'opId' } })
  await t.rejects(a.request('tasks.enqueue', { ...task(1), opId: 42 }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'opId' } })
  const opId = newOpId()
  await a.request('ds.consume', { kind: 'uploadTokens', key: 'nope', opId })
  await t.rejects(b.request('ds.putIf', { kind: 'uploadTokens', key: 'nope', value: { a: 1 }, match: null, opId }), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'opId' } })
  t.same(await a.request('ds.get', { kind: 'uploadTokens', key: 'nope' }), { value: null }, 'the reused op id wrote nothing')
})

t.test('expired op ids are swept in batches; a repeat after that applies again (the bound of the resend window)', async (t) => {
  const store = createPostgresDatastore(db)
  await store.put('uploadTokens', 'swept', { n: 1 })
  const opId = newOpId()
  t.same(await store.consume('uploadTokens', 'swept', opId), { n: 1 })
  // 12,000 old records (more than one sweep batch) beside this one, then everything made old.
  await db.query(`INSERT INTO espra_ops (op_id, op, answer, expires_at) SELECT 'old-op-id-' || lpad(g::text, 8, '0'), 'ds.consume', NULL, 0 FROM generate_series(1, 12000) g`)
  const fresh = await count(`SELECT count(*) AS n FROM espra_ops WHERE expires_at > 0`)
  t.ok(fresh >= 1, 'recent op ids are there')
  t.equal(await store.removeExpiredRows(Date.now()), 12_000, 'the expired ones go (three batches), the recent ones stay')
  t.equal(await count(`SELECT count(*) AS n FROM espra_ops`), fresh)
  await db.query('UPDATE espra_ops SET expires_at = 0 WHERE op_id = $1', [opId])
  t.equal(await store.removeExpiredRows(Date.now()), 1)
  await store.put('uploadTokens', 'swept', { n: 2 })
  t.same(await store.consume('uploadTokens', 'swept', opId), { n: 2 }, 'forgotten: the repeat applies again')
})

t.test('the embedded seed remembers op ids in memory: a repeat to the same seed applies once', async (t) => {
  const seed = await startTestSeed(t)
  const c = client(t, seed.port)
  await c.ready
  await c.request('ds.put', { kind: 'uploadTokens', key: 'e', value: { v: 1 } })
  const consume = { kind: 'uploadTokens', key: 'e', opId: newOpId() }
  const [x, y] = await Promise.all([c.request('ds.consume', consume), c.request('ds.consume', consume)])
  t.same([x, y, await c.request('ds.consume', consume)], [{ value: { v: 1 } }, { value: { v: 1 } }, { value: { v: 1 } }], 'the same answer every time')
  const enqueue = { ...task(1), opId: newOpId() }
  const { id } = await c.request<{ id: string }>('tasks.enqueue', enqueue)
  t.same(await c.request('tasks.enqueue', enqueue), { id })
  t.same(await c.request('tasks.counts', {}), { ready: 1, delayed: 0, leased: 0, dead: 0, backend: 'embedded' }, 'one task')
})
