// `admin push-build` through a leader failover: two seeds on one PostgreSQL (a real server started here),
// an app node and a fileserver on a shared blob directory. The build has a small file and a 48 MB one; the
// leader is killed with SIGKILL as soon as it stored the first blob, so the push loses it during the upload
// (or, when the big file went first, around the commit). The command follows the leader to the other seed,
// asks it what it still lacks, commits there once, follows the deploy, and exits 0 with the build current
// everywhere and recorded once.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { admin, writeBuild } from '../helpers/app-cluster.js'
import { get, health, startNode, startSeedPair, waitFor } from '../helpers/cluster.js'
import { startPostgres } from '../helpers/postgres.js'

const postgres = await startPostgres(t)
const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s', 'seed-grace': '3s' }

t.test('the leader killed during push-build: the push finishes on the new leader, exit 0, one build, current everywhere', async (t) => {
  const url = await postgres.createDatabase()
  const blobDir = mkdtempSync(join(tmpdir(), 'espra-push-failover-blobs-'))
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': '2000ms', 'blob-dir': blobDir, ...TIMINGS })
  const list = addresses.join(',')
  const node = { seed: list, 'blob-dir': blobDir, children: 1, ...TIMINGS }
  const app = await startNode(t, 'app', { ...node, 'node-id': 'app-1', threads: 1 })
  const fs = await startNode(t, 'fileserver', { ...node, 'node-id': 'fs-1' })
  for (const n of [app, fs]) await waitFor('registered', async () => (await health(n.port)).body['seedConnected'] === true)

  const dir = writeBuild({
    'server/index.js': 'export function handle() { return "v1" }\n',
    'public/index.html': '<!doctype html><title>v1</title>',
  })
  writeFileSync(join(dir, 'public', 'big.bin'), randomBytes(48 * 1024 ** 2))

  const pushing = admin(['push-build', dir, '--message', 'through a failover', '--seed', list])
  await seeds[0]!.waitForLog((l) => l.msg === 'build blob stored', 'the leader stored a first blob', 60_000)
  seeds[0]!.proc.kill('SIGKILL')

  const r = await pushing
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'b1\n', 'the build id alone on stdout')
  t.match(r.stderr, /the leader went away/, 'it says it lost the leader')
  for (const n of [app, fs]) t.equal((await health(n.port)).body['build'], 'b1', 'b1 served')
  t.match(await get(app.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } })
  t.match(await get(fs.port, '/app/public/index.html'), { status: 200, headers: { 'x-espra-build': 'b1' } })
  const builds = JSON.parse((await admin(['builds', '--json', '--seed', list])).stdout) as { id: string; state: string; current: boolean; message: string }[]
  t.match(builds, [{ id: 'b1', state: 'live', current: true, message: 'through a failover' }])
  t.equal(builds.length, 1, 'recorded once')
})
