// The seeds' leader lease on a real PostgreSQL: one holder at a time, the epoch grows on every
// takeover, renewals fenced by epoch, and a leader that cannot reach the database steps down
// by itself before its lease runs out in the database.
import pg from 'pg'
import t, { type Test } from 'tap'
import { acquireLease, readLease, releaseLease, renewLease } from '../../lib/storage/postgres-lease.js'
import { openPostgres, type Postgres } from '../../lib/storage/postgres.js'
import { startLeaseLeadership } from '../../seed/leadership.js'
import { captureLog, sleep, until } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'

const postgres = await startPostgres(t)
// The lease's timers do not hold the process open (a seed's server does): this does, while tests wait on them.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(keepAlive))

async function open(t: Test, url: string): Promise<Postgres> {
  const db = await openPostgres({ url, max: 4, log: captureLog('silent').log })
  t.teardown(() => db.close())
  return db
}

t.test('one holder at a time; a takeover after expiry grows the epoch; renewals are fenced', async (t) => {
  const db = await open(t, await postgres.createDatabase())
  t.equal(await readLease(db), null, 'nobody has led yet')
  t.equal(await acquireLease(db, 'a', '10.0.0.1:7000', 60_000), 1, 'the first taker gets epoch 1')
  t.equal(await acquireLease(db, 'b', '10.0.0.2:7000', 60_000), null, 'a live lease is not taken')
  t.equal(await acquireLease(db, 'a', '10.0.0.1:7000', 60_000), null, 'not even by its holder (another process with the same id)')
  t.ok(await renewLease(db, 'a', 1, 60_000), 'the holder renews')
  t.notOk(await renewLease(db, 'a', 2, 60_000), 'not under another epoch')
  t.notOk(await renewLease(db, 'b', 1, 60_000), 'nor does anyone else')
  const row = await readLease(db)
  t.match(row, { holder: 'a', address: '10.0.0.1:7000', epoch: 1 })
  t.ok(row!.expiresAt > row!.now)

  await releaseLease(db, 'a', 1)
  t.equal(await acquireLease(db, 'b', '10.0.0.2:7000', 300), 2, 'released: taken at once, epoch 2')
  t.notOk(await renewLease(db, 'a', 1, 60_000), 'the old holder cannot renew')
  const deadline = (await readLease(db))!
  await sleep(Math.max(0, deadline.expiresAt - deadline.now) + 50)
  t.notOk(await renewLease(db, 'b', 2, 60_000), 'a lease that ran out is not renewed')
  t.equal(await acquireLease(db, 'a', '10.0.0.1:7000', 60_000), 3, 'run out: taken over, epoch 3')
})

t.test('twelve seeds take an empty lease at once: exactly one gets it', async (t) => {
  const db = await open(t, await postgres.createDatabase())
  const got = await Promise.all(Array.from({ length: 12 }, (_, i) => acquireLease(db, `s${i}`, `10.0.0.${i}:7000`, 60_000)))
  t.same(got.filter((e) => e !== null), [1])
})

t.test('leadership: one of two leads; a graceful stop hands over with a higher epoch', async (t) => {
  const url = await postgres.createDatabase()
  const [dbA, dbB] = [await open(t, url), await open(t, url)]
  const a = await startLeaseLeadership({ db: dbA, holder: 'a', address: '127.0.0.1:1', leaseMs: 800, log: captureLog('silent').log })
  const b = await startLeaseLeadership({ db: dbB, holder: 'b', address: '127.0.0.1:2', leaseMs: 800, log: captureLog('silent').log })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  t.ok(a.isLeader(), 'the first to look leads')
  t.notOk(b.isLeader())
  t.same(a.view(), { leader: true, epoch: 1, holder: 'a', address: '127.0.0.1:1' })
  t.same(b.view(), { leader: false, epoch: 1, holder: 'a', address: '127.0.0.1:1' }, 'the follower knows where the leader is')
  await sleep(1200)
  t.ok(a.isLeader(), 'renewed past its first lease')
  t.equal(a.pushEpoch(), 1)
  const led = new Promise<number>((resolve) => b.onLead(resolve))
  await a.close()
  t.equal(await led, 2, 'the follower took over with epoch 2')
  t.ok(b.isLeader())
  t.equal(b.pushEpoch(), 2)
})

t.test('leadership: the database lost, the leader steps down before its lease runs out there', async (t) => {
  const pgServer = await startPostgres(t)
  const url = await pgServer.createDatabase()
  const db = await open(t, url)
  const { log, lines } = captureLog('debug')
  const lead = await startLeaseLeadership({ db, holder: 'a', address: '127.0.0.1:1', leaseMs: 1000, log })
  t.teardown(() => lead.close())
  t.ok(lead.isLeader())
  const steppedDown = new Promise<{ at: number; reason: string }>((resolve) => lead.onStepDown((reason) => resolve({ at: Date.now(), reason })))
  await pgServer.stop()
  const { at, reason } = await steppedDown
  t.match(reason, 'could not be renewed')
  t.notOk(lead.isLeader())
  t.equal(lead.pushEpoch(), null, 'no push is stamped any more')
  t.ok(lines.some((l) => l.msg === 'seed stepped down: no longer the leader'), 'logged')
  await pgServer.start()
  const check = new pg.Client({ connectionString: url })
  await check.connect()
  const { rows } = await check.query<{ expires_at: string; epoch: string }>('SELECT expires_at, epoch FROM espra_leader')
  await check.end()
  t.ok(at < Number(rows[0]!.expires_at), `stepped down at ${at}, before the lease of epoch ${rows[0]!.epoch} ran out in the database (${rows[0]!.expires_at})`)
  // With the database back and nobody else, it takes the lease again under a new epoch.
  await until(() => lead.isLeader(), 10_000, 'leading again')
  t.equal(lead.pushEpoch(), 2)
})
