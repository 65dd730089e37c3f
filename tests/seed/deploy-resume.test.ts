// A deploy survives a leader failover (issue #15), with real processes: two seeds on one PostgreSQL
// (started here), two app nodes and a fileserver on a shared blob directory. A build whose `init`
// waits for a gate file holds the deploy at `staging`; the leader is killed with SIGKILL there.
// - The new leader stages the same build again once its grace ended and activates it everywhere;
//   the nodes answer from the load they had started (`init` ran once per app node, not twice).
//   `admin push-build` follows the deploy to the new leader and exits 0 with the build's id.
// - A deploy with a canary is not resumed: the new leader tells the nodes to drop its build, which
//   shows `abandoned`, the previous build stays current everywhere, and push-build says so, exit 1.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { admin, writeBuild } from '../helpers/app-cluster.js'
import { get, health, startNode, startSeedPair, waitFor, type StartedNode } from '../helpers/cluster.js'
import { startPostgres } from '../helpers/postgres.js'

const postgres = await startPostgres(t)
const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s', 'seed-grace': '3s' }

/** A build answering `version`; with `gate`, every worker's `init` waits until that file exists and then notes itself in `gate`.log. */
const writeVersion = (version: string, gate?: string) => writeBuild({
  'server/index.js': [
    `import { appendFileSync, existsSync } from 'node:fs'`,
    gate === undefined ? '' : `export async function init() {
  while (!existsSync(${JSON.stringify(gate)})) await new Promise((resolve) => setTimeout(resolve, 50))
  appendFileSync(${JSON.stringify(`${gate}.log`)}, ${JSON.stringify(`${version}\n`)})
}`,
    `export function handle() { return ${JSON.stringify(version)} }`,
  ].join('\n'),
  'public/index.html': `<!doctype html><title>${version}</title>`,
  [`public/asset-${version}.js`]: `console.log(${JSON.stringify(version)})`,
})

interface Cluster {
  seeds: StartedNode[]
  list: string
  leader: StartedNode
  follower: StartedNode
  apps: StartedNode[]
  fs: StartedNode
}

async function startCluster(t: Test): Promise<Cluster> {
  const url = await postgres.createDatabase()
  const blobDir = mkdtempSync(join(tmpdir(), 'espra-resume-blobs-'))
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': '2000ms', 'blob-dir': blobDir, ...TIMINGS })
  const list = addresses.join(',')
  const node = { seed: list, 'blob-dir': blobDir, children: 1, ...TIMINGS }
  const apps = await Promise.all(['app-1', 'app-2'].map((id) => startNode(t, 'app', { ...node, 'node-id': id, threads: 1 })))
  const fs = await startNode(t, 'fileserver', { ...node, 'node-id': 'fs-1' })
  for (const n of [...apps, fs]) await waitFor('registered', async () => (await health(n.port)).body['seedConnected'] === true)
  return { seeds, list, leader: seeds[0]!, follower: seeds[1]!, apps, fs }
}

const serving = (node: StartedNode, id: string, timeoutMs = 60_000) => waitFor(`${node.logs[0]?.['node'] ?? 'node'} serves ${id}`, async () => (await health(node.port)).body['build'] === id, timeoutMs)

async function pushQuick(c: Cluster, version: string, id: string): Promise<void> {
  const pushed = await admin(['push-build', writeVersion(version), '--seed', c.list])
  if (pushed.code !== 0 || pushed.stdout !== `${id}\n`) throw new Error(`push-build failed: ${pushed.stderr}`)
}

/** Kills the leader once every app node and the fileserver began staging `id`; resolves once the other seed leads. */
async function killWhileStaging(c: Cluster, id: string): Promise<void> {
  for (const n of [...c.apps, c.fs]) await n.waitForLog((l) => l.msg === 'staging build' && l['build'] === id, `staging ${id}`, 30_000)
  c.leader.proc.kill('SIGKILL')
  await c.follower.waitForLog((l) => l.msg === 'seed leads the cluster', 'the other seed takes over', 20_000)
}

t.test('the leader killed while a build stages: the new leader stages it again and activates it everywhere, from the same loads', async (t) => {
  const c = await startCluster(t)
  await pushQuick(c, 'v1', 'b1')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b1')

  const gate = join(mkdtempSync(join(tmpdir(), 'espra-resume-gate-')), 'open')
  const pushing = admin(['push-build', writeVersion('v2', gate), '--message', 'held', '--seed', c.list])
  await killWhileStaging(c, 'b2')
  await c.follower.waitForLog((l) => /^build b2 resumed/.test(String(l.msg)), 'the new leader resumes b2', 30_000)
  writeFileSync(gate, '')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b2')
  for (const app of c.apps) t.match(await get(app.port, '/'), { status: 200, body: 'v2', headers: { 'x-espra-build': 'b2' } }, 'b2 answers on every app node')
  t.match(await get(c.fs.port, '/app/public/asset-v2.js'), { status: 200, headers: { 'x-espra-build': 'b2' } }, 'and on the fileserver')
  t.same(readFileSync(`${gate}.log`, 'utf8'), 'v2\nv2\n', 'init ran once per app node: the resumed staging used the loads already under way')
  for (const n of c.apps) t.notOk(n.logs.some((l) => l.msg === 'app build serving' && l['build'] !== 'b1' && l['build'] !== 'b2'), 'no other build was ever current')

  const listed = JSON.parse((await admin(['builds', '--json', '--seed', c.list])).stdout) as { id: string; state: string; current: boolean; message: string }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'live', current: true, message: 'held' }, { id: 'b1', state: 'live', current: false }])
  const r = await pushing
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'b2\n', 'push-build followed the deploy to the new leader and printed the build')
  t.match(r.stderr, /the leader went away \(ESPRA_ERR_META_CLOSED\); asking the next one/)
  t.match(r.stderr, /build b2: the new leader stages it again once the nodes have re-registered/)
})

t.test('a canary deploy is not resumed: its build is dropped by every node and shows abandoned; the previous build stays current', async (t) => {
  const c = await startCluster(t)
  await pushQuick(c, 'v1', 'b1')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b1')

  const gate = join(mkdtempSync(join(tmpdir(), 'espra-resume-gate-')), 'open')
  const pushing = admin(['push-build', writeVersion('v2', gate), '--canary', '1', '--canary-time', '1h', '--seed', c.list])
  await waitFor('the fileserver staged b2', async () => (await get(c.fs.port, '/app/public/asset-v2.js')).status === 200, 30_000)
  await killWhileStaging(c, 'b2')
  await waitFor('the fileserver dropped the staged b2', async () => (await get(c.fs.port, '/app/public/asset-v2.js')).status === 404, 30_000)
  writeFileSync(gate, '')
  const r = await pushing
  t.equal(r.code, 1, 'push-build does not claim the canary deploy went through')
  t.match(r.stderr, /ESPRA_ERR_BUILD_ABANDONED: build b2 is current nowhere: its deploy was abandoned \(its leader stopped during a canary deploy, which a new leader does not resume\)/)
  const listed = JSON.parse((await admin(['builds', '--json', '--seed', c.list])).stdout) as { id: string; state: string; current: boolean }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'abandoned', current: false }, { id: 'b1', state: 'live', current: true }])
  for (const app of c.apps) t.match(await get(app.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } }, 'b1 on every app node')
  t.notOk(c.follower.logs.some((l) => /^build b2 resumed/.test(String(l.msg))), 'the new leader did not resume it')

  // The staged loads finished after the cancel and were dropped: the next push goes through everywhere.
  await pushQuick(c, 'v3', 'b3')
  for (const app of c.apps) t.match(await get(app.port, '/'), { status: 200, body: 'v3', headers: { 'x-espra-build': 'b3' } }, 'b3 on every app node')
  for (const n of c.apps) t.notOk(n.logs.some((l) => l.msg === 'app build serving' && l['build'] === 'b2'), 'b2 was never current')
})
