// `espra-node datastore copy`: a real embedded seed (the built binary) writes builds, tokens, table
// rows and tasks over the meta port; while it runs the copy is refused; once stopped, the copy into a
// real PostgreSQL prints the counts, and a seed started on PostgreSQL reads everything back.
// A non-empty target, a wrong password and an unreachable host each give one clear line.
import { spawn } from 'node:child_process'
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import { open } from 'lmdb'
import t from 'tap'
import { createAppTables } from '../../lib/storage/app-tables.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { listAll, type DatastoreKind } from '../../lib/storage/datastore.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import { decodePayload, newTask } from '../../lib/tasks/task.js'
import { freePort } from '../helpers/cluster.js'
import { SECRET } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { client, startTestSeed } from '../helpers/seed.js'
import { BIN, runCli, waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const env: NodeJS.ProcessEnv = { ...process.env, ESPRA_SECRET: SECRET }
const dataDir = testDir('espra-copy-')

// An embedded seed: the real binary, so "held open by a running seed" is another process, as in production.
const metaPort = await freePort()
const seedProc = spawn(process.execPath, [
  BIN, '--role=seed', `--data-dir=${dataDir}`, `--meta-port=${metaPort}`, `--port=${await freePort()}`, `--metrics-port=${await freePort()}`,
  '--bind=127.0.0.1', '--log-level=warn',
], { env, stdio: ['ignore', 'ignore', 'pipe'] })
let seedStderr = ''
seedProc.stderr.on('data', (d: Buffer) => (seedStderr += d))
const seedExited = new Promise<void>((done) => seedProc.once('exit', () => done()))
t.teardown(() => void seedProc.kill('SIGKILL'))

const written = {
  builds: { b1: { files: 3, message: 'first' }, b2: { files: 5, message: 'second' } },
  uploadTokens: { tok1: { maxBytes: 1000, exp: Date.now() + 3_600_000 } },
}

t.test('an embedded seed writes records and tasks; the copy is refused while it runs', async (t) => {
  const c = await waitFor('the embedded seed', async () => {
    const c = client(t, metaPort)
    try {
      await c.ready
      return c
    } catch {
      c.destroy()
      return undefined
    }
  }, 30_000)
  const ds = createDatastoreClient(c)
  for (const [key, value] of Object.entries(written.builds)) await ds.put('builds', key, value)
  for (const [key, value] of Object.entries(written.uploadTokens)) await ds.put('uploadTokens', key, value)
  const tables = createAppTables(ds)
  await tables.set('scores', 'alice', { points: 7 })
  await tables.set('scores', 'bob', { points: 9 }, 3_600_000)
  const q = createMetaTaskQueue(c)
  await q.enqueue(newTask('ready', { n: 1 }))
  await q.enqueue(newTask('leased', { n: 2 }))
  await q.enqueue(newTask('later', { n: 3 }, { delay: 3_600_000 }))
  const dead = await q.enqueue(newTask('dead', { n: 4 }, { attempts: 1 }))
  await createMetaTaskQueue(c, 'mailq').enqueue(newTask('mail', { to: 'a@example.com' }))
  const leased = await q.lease({ max: 3, leaseMs: 60_000 })
  t.same(leased.map((x) => x.name), ['ready', 'leased', 'dead'])
  // 'ready' released, 'leased' still leased when the seed stops, 'dead' fails its only attempt.
  t.same(await q.settle([
    { id: leased[0]!.id, attempt: 1, result: 'released' },
    { id: dead, attempt: 1, result: 'failed', error: 'gave up', retryInMs: 0 },
  ]), [])
  t.same(await q.counts(), { ready: 1, delayed: 1, leased: 1, dead: 1 })

  const url = await postgres.createDatabase('copy_refused_running')
  const r = await runCli(['datastore', 'copy', '--from', dataDir, '--to', url], { env })
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `espra-node: ESPRA_ERR_STORAGE_UNAVAILABLE: ${join(dataDir, 'seed')}: open in a running process (pid ${seedProc.pid}): stop the seed first`)
  c.destroy()
  seedProc.kill('SIGTERM')
  await seedExited
  t.equal(seedStderr, '', 'the seed stopped cleanly')
})

let copiedTo = ''
t.test('the copy into an empty PostgreSQL prints the counts; a seed on PostgreSQL reads everything back', async (t) => {
  copiedTo = await postgres.createDatabase('copy_target')
  const r = await runCli(['datastore', 'copy', '--from', dataDir, '--to', copiedTo], { env })
  t.equal(r.stderr, '')
  t.equal(r.code, 0)
  t.notMatch(r.stdout, postgres.password, 'the password is masked')
  t.match(r.stdout, `to postgres://espra:***@127.0.0.1:${postgres.port}/copy_target`)
  t.match(r.stdout, /^ {2}builds +2$/m)
  t.match(r.stdout, /^ {2}uploadTokens +1$/m)
  t.match(r.stdout, /^ {2}appTables +2$/m)
  t.match(r.stdout, /^ {2}tasks tasks +4 \(2 ready, 1 delayed, 1 dead\)$/m, 'the leased task is copied as ready')
  t.match(r.stdout, /^ {2}tasks mailq +1 \(1 ready, 0 delayed, 0 dead\)$/m)

  const { seed, port } = await startTestSeed(t, { datastore: copiedTo, tasks: 'postgres' })
  t.teardown(() => seed.close())
  const c = client(t, port)
  await c.ready
  const ds = createDatastoreClient(c)
  for (const [key, value] of Object.entries(written.builds)) t.same(await ds.get('builds', key), value, `build ${key}`)
  for (const [key, value] of Object.entries(written.uploadTokens)) t.same(await ds.get('uploadTokens', key), value, `token ${key}`)
  const tables = createAppTables(ds)
  t.same(await tables.get('scores', 'alice'), { points: 7 })
  t.same(await tables.get('scores', 'bob'), { points: 9 })
  // Every kind's count as printed is what the seed on PostgreSQL lists.
  for (const line of r.stdout.split('\n')) {
    const m = /^ {2}(\w+) +(\d+)$/.exec(line)
    if (m === null) continue
    let n = 0
    for await (const _ of listAll(ds, m[1] as DatastoreKind)) n++
    t.equal(n, Number(m[2]), `${m[1]} listed`)
  }
  const q = createMetaTaskQueue(c)
  t.same(await q.counts(), { ready: 2, delayed: 1, leased: 0, dead: 1 })
  t.match((await q.deadLetters()).tasks, [{ name: 'dead', error: 'gave up', attempts: 1 }])
  const got = await q.lease({ max: 10, leaseMs: 60_000 })
  t.same(got.map((x) => [x.name, decodePayload(x.payload)]), [['ready', { n: 1 }], ['leased', { n: 2 }]], 'ready ones in their order, with their payloads')
  const mail = await createMetaTaskQueue(c, 'mailq').lease({ max: 10, leaseMs: 60_000 })
  t.same(mail.map((x) => [x.name, decodePayload(x.payload)]), [['mail', { to: 'a@example.com' }]])
})

t.test('a non-empty target is refused, saying what is there; --force copies anyway', async (t) => {
  const r = await runCli(['datastore', 'copy', '--from', dataDir, '--to', copiedTo], { env })
  t.equal(r.code, 2)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `espra-node: --to: postgres://espra:***@127.0.0.1:${postgres.port}/copy_target is not empty (`)
  t.match(r.stderr, '2 builds')
  t.match(r.stderr, 'tasks in queue tasks')
  t.notMatch(r.stderr, postgres.password)
  // The URL from the environment this time (the password off the command line).
  const forced = await runCli(['datastore', 'copy', '--from', dataDir, '--force'], { env: { ...env, ESPRA_DATASTORE: copiedTo } })
  t.equal(forced.code, 0, forced.stderr)
  t.match(forced.stdout, '(--force: it already held ')
})

t.test('a wrong password and an unreachable host: one line each, no password', async (t) => {
  const url = await postgres.createDatabase('copy_wrong_password')
  const wrong = url.replace(`:${encodeURIComponent(postgres.password)}@`, ':not-the-password@')
  const r = await runCli(['datastore', 'copy', '--from', dataDir, '--to', wrong], { env })
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `ESPRA_ERR_DATASTORE_UNAVAILABLE: the datastore is unavailable: cannot use PostgreSQL at 127.0.0.1:${postgres.port}/copy_wrong_password`)
  t.match(r.stderr, 'password authentication failed for user "espra"')
  t.notMatch(r.stderr, 'not-the-password')

  const port = await freePort()
  const down = await runCli(['datastore', 'copy', '--from', dataDir, '--to', `postgres://espra:hunter2secret@127.0.0.1:${port}/espra`], { env })
  t.equal(down.code, 1)
  t.equal(down.stderr.trim().split('\n').length, 1, 'one line')
  t.match(down.stderr, `cannot use PostgreSQL at 127.0.0.1:${port}/espra (connect ECONNREFUSED 127.0.0.1:${port})`)
  t.notMatch(down.stderr, 'hunter2secret')
})

t.test('bad input: no store at --from, a --to that is not PostgreSQL, a missing flag', async (t) => {
  const empty = testDir('espra-copy-empty-')
  const none = await runCli(['datastore', 'copy', '--from', empty, '--to', postgres.url('x')], { env })
  t.equal(none.code, 2)
  t.match(none.stderr, `espra-node: --from: no embedded datastore at ${join(empty, 'seed', 'datastore.mdb')}`)
  const mysql = await runCli(['datastore', 'copy', '--from', dataDir, '--to', 'mysql://u:pw@h/db'], { env })
  t.equal(mysql.code, 2)
  t.match(mysql.stderr, /^espra-node: --to: must be embedded or postgres:\/\//)
  const embedded = await runCli(['datastore', 'copy', '--from', dataDir, '--to', 'embedded'], { env })
  t.equal(embedded.code, 2)
  t.match(embedded.stderr, 'espra-node: --to: must be a postgres:// URL')
  const { ESPRA_DATASTORE: _unset, ...noUrl } = env
  const missing = await runCli(['datastore', 'copy', '--from', dataDir], { env: noUrl })
  t.equal(missing.code, 2)
  t.match(missing.stderr, 'espra-node: --to: a postgres://user:password@host:5432/database URL is required (or ESPRA_DATASTORE)')
})

t.test('a store written by a newer version is refused, and the target is left untouched', async (t) => {
  const newer = testDir('espra-copy-newer-')
  cpSync(join(dataDir, 'seed'), join(newer, 'seed'), { recursive: true })
  const root = open({ path: join(newer, 'seed', 'datastore.mdb'), maxDbs: 64, encoding: 'msgpack' })
  await root.openDB<number, string>({ name: 'meta', encoding: 'msgpack' }).put('schemaVersion', 99)
  await root.close()
  const url = await postgres.createDatabase('copy_newer')
  const r = await runCli(['datastore', 'copy', '--from', newer, '--to', url], { env })
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `espra-node: ESPRA_ERR_DATASTORE_SCHEMA: ${join(newer, 'seed', 'datastore.mdb')} has schema version 99; this build knows up to 1 (run a newer espra-node)`)
  const after = await runCli(['datastore', 'copy', '--from', dataDir, '--to', url], { env })
  t.equal(after.code, 0, 'the target was not touched: an ordinary copy into it is not refused as non-empty')
})
