// A seed on PostgreSQL (a real server started here): start-up faults from the real binary,
// migrations by two seeds at once, a restart that keeps everything, and the database going
// away and coming back while the seed serves.
import pg from 'pg'
import t from 'tap'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { openPostgres, PG_MIGRATIONS } from '../../lib/storage/postgres.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import { newTask } from '../../lib/tasks/task.js'
import { startSeed } from '../../seed/seed.js'
import { freePort } from '../helpers/cluster.js'
import { captureLog, seedConfig } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { client, startTestSeed } from '../helpers/seed.js'
import { runCli, waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const env = { ...process.env, ESPRA_SECRET: 'p'.repeat(32) }

async function seedExit(datastore: string): Promise<{ code: number | null; stderr: string }> {
  const dataDir = testDir('espra-pg-seed-')
  const [metaPort, port, metricsPort] = [await freePort(), await freePort(), await freePort()]
  return runCli(['--role=seed', `--data-dir=${dataDir}`, `--meta-port=${metaPort}`, `--port=${port}`, `--metrics-port=${metricsPort}`, '--bind=127.0.0.1', `--datastore=${datastore}`], { env })
}

t.test('unreachable database at start: exit 1, one line naming the host and the driver\'s error', async (t) => {
  const port = await freePort()
  const r = await seedExit(`postgres://espra:hunter2secret@127.0.0.1:${port}/espra`)
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `ESPRA_ERR_DATASTORE_UNAVAILABLE: the datastore is unavailable: cannot use PostgreSQL at 127.0.0.1:${port}/espra (connect ECONNREFUSED 127.0.0.1:${port})`)
  t.notMatch(r.stderr, 'hunter2secret', 'no password')
})

t.test('a wrong password at start: exit 1, one line with the server\'s refusal', async (t) => {
  const url = await postgres.createDatabase()
  const wrong = url.replace(`:${encodeURIComponent(postgres.password)}@`, ':not-the-password@')
  const r = await seedExit(wrong)
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `cannot use PostgreSQL at 127.0.0.1:${postgres.port}/`)
  t.match(r.stderr, 'password authentication failed for user "espra"')
  t.notMatch(r.stderr, 'not-the-password')
})

t.test('config check masks the password; --tasks postgres needs a postgres datastore', async (t) => {
  const r = await runCli(['config', 'check', '--role=seed', '--datastore=postgres://espra:s3cret@db.internal:5432/espra'], { env })
  t.equal(r.code, 0)
  const printed = JSON.parse(r.stdout) as Record<string, unknown>
  t.equal(printed['datastore'], 'postgres://espra:***@db.internal:5432/espra')
  t.equal(printed['tasks'], 'postgres', 'the queue follows a postgres datastore')
  t.equal(printed['datastorePool'], 10)
  t.notMatch(r.stdout, 's3cret')
  const bad = await runCli(['config', 'check', '--role=seed', '--tasks=postgres'], { env })
  t.equal(bad.code, 2)
  t.match(bad.stderr, /^espra-node: --tasks: postgres needs --datastore postgres:\/\//)
  const url = await runCli(['config', 'check', '--role=seed', '--datastore=mysql://x@y/z'], { env })
  t.equal(url.code, 2)
  t.match(url.stderr, /^espra-node: --datastore: must be embedded or postgres:\/\//)
})

t.test('two seeds migrate one database at once; a newer schema is refused, never downgraded', async (t) => {
  const url = await postgres.createDatabase()
  const [a, b] = await Promise.all([startTestSeed(t, { datastore: url }), startTestSeed(t, { datastore: url })])
  t.ok(a.port > 0 && b.port > 0, 'both started')
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(() => admin.end())
  const { rows } = await admin.query<{ version: number }>('SELECT version FROM espra_schema ORDER BY version')
  t.same(rows.map((r) => r.version), PG_MIGRATIONS.map((m) => m.version), 'each migration ran once')
  await a.seed.close()
  await b.seed.close()

  await admin.query(`INSERT INTO espra_schema (version, description) VALUES (${PG_MIGRATIONS.length + 1}, 'from the future')`)
  await t.rejects(openPostgres({ url, max: 2, log: captureLog('silent').log }), {
    code: 'ESPRA_ERR_DATASTORE_SCHEMA', details: { found: PG_MIGRATIONS.length + 1, known: PG_MIGRATIONS.length },
  })
  const after = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM espra_schema')
  t.equal(after.rows[0]!.n, PG_MIGRATIONS.length + 1, 'nothing was touched')
})

t.test('a seed restarted on the same database keeps everything', async (t) => {
  const url = await postgres.createDatabase()
  const config = seedConfig({ datastore: url, tasks: 'postgres', seedGrace: 0 })
  const first = await startSeed({ config, log: captureLog('silent').log })
  const c1 = client(t, first.port)
  await c1.ready
  const ds1 = createDatastoreClient(c1)
  const q1 = createMetaTaskQueue(c1)
  await ds1.put('builds', 'b1', { files: 3 })
  await ds1.put('vhosts', 'example.com/', { file: 'h' })
  const ready = await q1.enqueue(newTask('r', 1))
  const later = await q1.enqueue(newTask('d', 2, { delay: 3_600_000 }))
  const dead = await q1.enqueue(newTask('x', 3, { attempts: 1 }))
  const mail = await createMetaTaskQueue(c1, 'mailq').enqueue(newTask('mail', 4))
  const [leased] = await q1.lease({ max: 1, leaseMs: 60_000 })
  await q1.lease({ max: 1, leaseMs: 60_000 })
  await q1.settle([{ id: dead, attempt: 1, result: 'failed', error: 'gave up', retryInMs: 0 }])
  t.equal(leased?.id, ready)
  await first.close()

  // Another seed process on another data dir: what it knows comes from the database.
  const second = await startSeed({ config: seedConfig({ datastore: url, tasks: 'postgres', seedGrace: 0 }), log: captureLog('silent').log })
  t.teardown(() => second.close())
  const c2 = client(t, second.port)
  await c2.ready
  const ds2 = createDatastoreClient(c2)
  const q2 = createMetaTaskQueue(c2)
  t.same(await ds2.get('builds', 'b1'), { files: 3 })
  t.same(await ds2.get('vhosts', 'example.com/'), { file: 'h' })
  t.same(await q2.counts(), { ready: 0, delayed: 1, leased: 1, dead: 1 }, 'a lease survives the restart too, until it expires')
  t.match((await q2.deadLetters()).tasks, [{ id: dead, error: 'gave up' }])
  t.same(await q2.extend([{ id: ready, attempt: 1 }], 60_000), [], 'the lease taken before the restart is still held')
  t.same((await createMetaTaskQueue(c2, 'mailq').lease({ max: 5, leaseMs: 1000 })).map((x) => x.id), [mail], 'the mail queue too')
  const next = await q2.enqueue(newTask('n', 5))
  t.ok(Number(next.slice(1)) > Number(later.slice(1)), 'ids keep growing')
})

t.test('the database goes away while the seed serves: ds and task ops fail with the code, the rest works, then it recovers', async (t) => {
  const url = await postgres.createDatabase()
  const { port, lines } = await startTestSeed(t, { datastore: url, tasks: 'postgres' })
  const c = client(t, port)
  await c.ready
  const ds = createDatastoreClient(c)
  const q = createMetaTaskQueue(c)
  await ds.put('builds', 'kept', { n: 1 })
  const id = await q.enqueue(newTask('kept', 1))

  await postgres.stop()
  const unavailable = { code: 'ESPRA_ERR_DATASTORE_UNAVAILABLE', details: { retryable: true } }
  await t.rejects(ds.get('builds', 'kept'), unavailable, 'ds.get')
  await t.rejects(ds.put('builds', 'new', { n: 2 }), unavailable, 'ds.put')
  await t.rejects(q.enqueue(newTask('n', 2)), unavailable, 'tasks.enqueue')
  await t.rejects(q.lease({ max: 1, leaseMs: 1000 }), unavailable, 'tasks.lease')
  const err = await ds.get('builds', 'kept').catch((e: Error) => e)
  t.match((err as Error).message, `cannot use PostgreSQL at 127.0.0.1:${postgres.port}/`)
  t.notMatch((err as Error).message, postgres.password)
  t.match(await c.request('ping', {}), { now: Number }, 'the meta port still answers')
  t.ok(lines.some((l) => /PostgreSQL unreachable/.test(l.msg)), 'the outage is logged')
  // It cannot renew its lease: it steps down before the lease runs out, and the leader ops say so.
  await waitFor('the seed steps down', () => lines.find((l) => l.msg === 'seed stepped down: no longer the leader'), 15_000)
  await t.rejects(c.request('nodes', {}), { code: 'ESPRA_ERR_SEED_NOT_LEADER' }, 'the registry is the leader\'s')
  t.match(await c.request('leader', {}), { leader: false, fenced: true }, 'it says it does not lead')

  await postgres.start()
  t.same(await waitFor('the datastore back', () => ds.get('builds', 'kept'), 30_000), { n: 1 }, 'recovers by itself')
  await waitFor('the seed leads again', () => lines.find((l) => l.msg === 'seed leads the cluster' && l['epoch'] === 2), 15_000)
  t.same(await c.request('nodes', {}), [], 'it leads again under epoch 2; the registry answers')
  t.same((await q.lease({ max: 1, leaseMs: 10_000 })).map((x) => x.id), [id], 'the queue too, with its tasks')
  await ds.put('builds', 'new', { n: 2 })
  t.ok(lines.some((l) => /PostgreSQL reachable again/.test(l.msg)), 'the recovery is logged')
})
