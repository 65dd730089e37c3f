// `admin push-build` through a leader failover: two seeds on one PostgreSQL (a real server started here),
// an app node and a fileserver on a shared blob directory. The build has a small file and a 48 MB one; the
// leader is killed with SIGKILL as soon as it stored the first blob, so the push loses it during the upload
// (or, when the big file went first, around the commit). The command follows the leader to the other seed,
// asks it what it still lacks, commits there once, follows the deploy, and exits 0 with the build current
// everywhere and recorded once.
// The commit recorded by the leader whose answer was lost: push-build reaches the leader through a TCP proxy
// that stops passing the seed's bytes back once push-build's `build.commit` went through it; the leader is
// killed once it logged the commit (after its record was written). push-build finds the build on the new
// leader by its push id, does not commit again (one record, with that push id), and exits 0 with the id.
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { admin, writeBuild } from '../helpers/app-cluster.js'
import { get, health, startNode, startSeedPair, waitFor } from '../helpers/cluster.js'
import { holdingProxy } from '../helpers/holding-proxy.js'
import { startPostgres } from '../helpers/postgres.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s', 'seed-grace': '3s' }

t.test('the leader killed during push-build: the push finishes on the new leader, exit 0, one build, current everywhere', async (t) => {
  const url = await postgres.createDatabase()
  const blobDir = testDir('espra-push-failover-blobs-')
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


t.test('the commit recorded by the leader, its answer lost and the leader killed: push-build does not commit twice, exit 0 with the id', async (t) => {
  const url = await postgres.createDatabase()
  const blobDir = testDir('espra-push-failover-blobs-')
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': '2000ms', 'blob-dir': blobDir, ...TIMINGS })
  const node = { seed: addresses.join(','), 'blob-dir': blobDir, children: 1, ...TIMINGS }
  const app = await startNode(t, 'app', { ...node, 'node-id': 'app-1', threads: 1 })
  await waitFor('registered', async () => (await health(app.port)).body['seedConnected'] === true)

  const proxy = await holdingProxy(t, addresses[0], 'build.commit')
  const dir = writeBuild({ 'server/index.js': 'export function handle() { return "v1" }\n', 'public/index.html': '<!doctype html><title>v1</title>' })
  // The proxy first: push-build links to the leader through it (the leader is seeds[0]).
  const pushing = admin(['push-build', dir, '--message', 'answer lost', '--seed', `${proxy.address},${addresses[1]}`])
  const committed = await seeds[0]!.waitForLog((l) => l.msg === 'build committed; staging', 'the leader recorded the commit', 60_000)
  t.ok(proxy.held(), 'the commit went through the proxy, which holds back every answer since')
  seeds[0]!.proc.kill('SIGKILL')

  const r = await pushing
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'b1\n', 'the build id alone on stdout')
  t.match(r.stderr, /the leader went away before answering the commit; the new leader has it as build b1/)
  t.notMatch(r.stderr, /sending it again/, 'not committed again')
  t.equal(committed['build'], 'b1')
  const pushId = /pushId.([A-Za-z0-9_-]{16})/.exec(proxy.sent())?.[1]
  t.ok(pushId, 'push-build sent a push id with its commit')
  const builds = JSON.parse((await admin(['builds', '--json', '--seed', addresses[1]])).stdout) as { id: string; state: string; current: boolean; pushId?: string; message: string }[]
  t.match(builds, [{ id: 'b1', state: 'live', current: true, message: 'answer lost', pushId }])
  t.equal(builds.length, 1, 'one build recorded')
  t.notOk(seeds[1]!.logs.some((l) => l.msg === 'build committed; staging'), 'the new leader committed nothing')
  t.match(await get(app.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } })
})
