// Build records fenced by the leader epoch (issue #15), on a real PostgreSQL and a real local blob store: a leader
// paused past its lease (SIGSTOP, a stalled disk) resumes with the view it had before the pause (leading under
// epoch 1) and writes its commit's record late, after another seed took the lease (epoch 2) and committed a build
// of the same number. The database refuses the late write (ESPRA_ERR_SEED_NOT_LEADER); the new leader's record,
// current pointer and manifest stay as they were. The same write under a lease still held goes through.
import t from 'tap'
import type { BuildManifest, BuildRecord } from '../../lib/builds/manifest.js'
import { createBlobStore } from '../../lib/storage/blob-store.js'
import { createPostgresDatastore } from '../../lib/storage/datastore-postgres.js'
import { acquireLease, readLease } from '../../lib/storage/postgres-lease.js'
import { openPostgres } from '../../lib/storage/postgres.js'
import { createBuildRecords, fenceBuildWrites, newManifestKey } from '../../seed/build-records.js'
import { captureLog } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const LEASE_MS = 400

const manifestOf = (path: string): BuildManifest => ({ files: [{ path, size: 1, hash: 'a'.repeat(64), type: 'text/plain' }] })
const recordOf = (n: number, message: string): BuildRecord => ({
  id: `b${n}`, n, at: Date.now(), message, files: 1, bytes: 1, manifestKey: newManifestKey(`b${n}`), state: 'staging', stagingAt: Date.now(), canaryPlanned: false,
})

t.test('a leader paused past its lease writes its build record late: refused by epoch; the new leader\'s build stays whole', async (t) => {
  const db = await openPostgres({ url: await postgres.createDatabase(), max: 4, log: captureLog('silent').log })
  t.teardown(() => db.close())
  const datastore = createPostgresDatastore(db)
  const blobs = await createBlobStore({ kind: 'local', dir: testDir('espra-fence-blobs-') })
  t.teardown(() => blobs.close())

  // Seed A leads under epoch 1, and keeps the view it had when it was paused.
  const epochA = await acquireLease(db, 'seed-a', '127.0.0.1:7001', LEASE_MS)
  t.equal(epochA, 1)
  const a = createBuildRecords(blobs, datastore, fenceBuildWrites(datastore.putFenced, 'seed-a', () => ({ view: () => ({ leader: true, epoch: epochA }) })))
  await a.create(recordOf(1, 'from a while it leads'), manifestOf('a1.txt'))
  t.match(await a.record('b1'), { message: 'from a while it leads' }, 'written while its lease holds')
  await a.setCurrent('b1')

  // Its lease runs out; seed B takes it (epoch 2) and commits b2, its next number.
  await waitFor('the lease of epoch 1 ran out', async () => (await acquireLease(db, 'seed-b', '127.0.0.1:7002', 60_000)) ?? undefined, 10_000)
  t.match(await readLease(db), { holder: 'seed-b', epoch: 2 })
  const b = createBuildRecords(blobs, datastore, fenceBuildWrites(datastore.putFenced, 'seed-b', () => ({ view: () => ({ leader: true, epoch: 2 }) })))
  await b.create(recordOf(2, 'from b, the new leader'), manifestOf('b2.txt'))
  await b.setCurrent('b2')

  // A resumes and writes what it had in flight: the same build number, its state, the current pointer.
  await t.rejects(a.create(recordOf(2, 'late, from a'), manifestOf('late.txt')), { code: 'ESPRA_ERR_SEED_NOT_LEADER', message: /stale epoch/ }, 'the late commit record is refused')
  await t.rejects(a.setCurrent('b1'), { code: 'ESPRA_ERR_SEED_NOT_LEADER' }, 'so is a late current pointer')
  await t.rejects(a.persistState('b2', 'refused', []), { code: 'ESPRA_ERR_SEED_NOT_LEADER' }, 'and a late deploy state')
  t.match(await b.record('b2'), { message: 'from b, the new leader', state: 'staging' }, 'the new leader\'s record is whole')
  t.same(await b.manifest('b2'), manifestOf('b2.txt'), 'and its manifest: the late one went under a key of its own')
  t.equal(await b.currentId(), 'b2', 'the current build is the new leader\'s')
  t.equal((await b.all()).length, 2, 'two records')

  // A seed that knows it does not lead refuses without asking the database.
  const stepped = createBuildRecords(blobs, datastore, fenceBuildWrites(datastore.putFenced, 'seed-b', () => ({ view: () => ({ leader: false, epoch: 2 }) })))
  await t.rejects(stepped.setCurrent('b1'), { code: 'ESPRA_ERR_SEED_NOT_LEADER' })
  t.equal(await b.currentId(), 'b2')
})
