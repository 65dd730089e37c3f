// A deploy survives a leader failover (issue #15), with real processes: two seeds on one PostgreSQL
// (started here), two app nodes and a fileserver on a shared blob directory. A build whose `init`
// waits for a gate file holds the deploy at `staging`; the leader is killed with SIGKILL there.
// - The new leader stages the same build again once its grace ended and activates it everywhere;
//   the nodes answer from the load they had started (`init` ran once per app node, not twice).
//   `admin push-build` follows the deploy to the new leader and exits 0 with the build's id.
// - A canary deploy killed while staging is staged again, then its canary runs on the planned share for the
//   whole --canary-time and is promoted; one killed during its canary watch keeps its canary serving the
//   build, and the new leader watches it for the rest of --canary-time, then promotes it. push-build exits 0.
// - The leader and then its canary killed during the watch: the new leader fails the canary (it did not come
//   back), the others drop the build, and push-build exits 1 with ESPRA_ERR_BUILD_CANARY_FAILED.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { admin, killHard, writeBuild } from '../helpers/app-cluster.js'
import { get, health, startNode, startSeedPair, waitFor, type StartedNode } from '../helpers/cluster.js'
import { startPostgres } from '../helpers/postgres.js'
import { testDir } from '../helpers/temp-dir.js'

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
  const blobDir = testDir('espra-resume-blobs-')
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

  const gate = join(testDir('espra-resume-gate-'), 'open')
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

const servedBuilds = (n: StartedNode) => n.logs.filter((l) => l.msg === 'app build serving').map((l) => l['build'])

t.test('the leader killed while a canary deploy stages: the new leader stages it again, then runs its canary on the planned share and promotes it', async (t) => {
  const c = await startCluster(t)
  await pushQuick(c, 'v1', 'b1')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b1')

  const gate = join(testDir('espra-resume-gate-'), 'open')
  const pushing = admin(['push-build', writeVersion('v2', gate), '--canary', '1', '--canary-time', '5s', '--seed', c.list])
  await killWhileStaging(c, 'b2')
  await c.follower.waitForLog((l) => /^build b2 resumed/.test(String(l.msg)), 'the new leader resumes b2', 30_000)
  writeFileSync(gate, '')
  const watch = await c.follower.waitForLog((l) => /^build b2 current on canaries/.test(String(l.msg)), 'the canary starts on the new leader', 60_000)
  t.same(watch['canaries'], ['app-1'], 'one canary, as planned')
  t.same(watch['baseline'], ['app-2'])
  t.equal(watch['timeMs'], 5000, 'watched for the whole --canary-time: it had not started')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b2')
  const r = await pushing
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'b2\n')
  t.match(r.stderr, /build b2: the new leader stages it again once the nodes have re-registered/)
  t.match(r.stderr, /canary passed/)
  const listed = JSON.parse((await admin(['builds', '--json', '--seed', c.list])).stdout) as { id: string; state: string; current: boolean; canary: { verdict: string } | null }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'live', current: true, canary: { verdict: 'passed' } }, { id: 'b1', state: 'live' }])
  t.same(readFileSync(`${gate}.log`, 'utf8'), 'v2\nv2\n', 'init ran once per app node')
  for (const n of c.apps) t.same(servedBuilds(n), ['b1', 'b2'], 'b1 then b2, nothing else')
})

t.test('the leader killed during a canary watch: the canary keeps serving, the new leader watches it for the rest of --canary-time, then promotes it', async (t) => {
  const c = await startCluster(t)
  await pushQuick(c, 'v1', 'b1')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b1')

  const timeMs = 20_000
  const pushing = admin(['push-build', writeVersion('v2'), '--canary', '1', '--canary-time', '20s', '--seed', c.list])
  // The record says `canary` before the canary is told to serve the build: this kill is after both.
  await serving(c.apps[0]!, 'b2')
  const started = await c.leader.waitForLog((l) => /^build b2 current on canaries/.test(String(l.msg)), 'the canary started')
  c.leader.proc.kill('SIGKILL')
  await c.follower.waitForLog((l) => l.msg === 'seed leads the cluster', 'the other seed takes over', 20_000)
  const open = await c.follower.waitForLog((l) => l.msg === 'build store open' && l['resumeAfterGrace'] === 'b2', 'the new leader will resume b2')
  t.equal(open['canaryResumed'], true, 'as a canary watch')
  const resumed = await c.follower.waitForLog((l) => /^canary of build b2 resumed/.test(String(l.msg)), 'the watch goes on', 30_000)
  const watch = await c.follower.waitForLog((l) => /^build b2 current on canaries/.test(String(l.msg)), 'the new watch')
  t.same(watch['canaries'], ['app-1'], 'the same canary')
  t.same(watch['baseline'], ['app-2'])
  t.ok((watch['restMs'] as number) < timeMs, `for the rest of the time only (${String(watch['restMs'])} ms)`)
  t.equal((await health(c.apps[0]!.port)).body['build'], 'b2', 'the canary still serves b2')
  t.equal((await health(c.apps[1]!.port)).body['build'], 'b1', 'the other app node still serves b1')

  const passed = await c.follower.waitForLog((l) => /^canary of build b2 passed/.test(String(l.msg)), 'the canary passes', 60_000)
  const at = (l: Record<string, unknown>) => Date.parse(String(l['time']))
  t.ok(at(passed) >= at(started) + timeMs - 50, 'judged no earlier than the watch was planned to end')
  t.ok(at(passed) >= at(resumed), 'by the new leader')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b2')
  const r = await pushing
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'b2\n', 'push-build followed the canary to the new leader and printed the build')
  t.match(r.stderr, /the leader went away \(ESPRA_ERR_META_CLOSED\); asking the next one/)
  t.match(r.stderr, /build b2: the new leader goes on watching its canary once the nodes have re-registered/)
  t.match(r.stderr, /canary passed/)
  const listed = JSON.parse((await admin(['builds', '--json', '--seed', c.list])).stdout) as { id: string; state: string; current: boolean; canary: { verdict: string; nodes: string[] } | null }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'live', current: true, canary: { verdict: 'passed', nodes: ['app-1'] } }, { id: 'b1', state: 'live', current: false }])
  t.same(servedBuilds(c.apps[0]!), ['b1', 'b2'], 'the canary never went back to b1 during the failover')
  t.same(servedBuilds(c.apps[1]!), ['b1', 'b2'])
  for (const app of c.apps) t.match(await get(app.port, '/'), { status: 200, body: 'v2', headers: { 'x-espra-build': 'b2' } })
})

t.test('the leader and the canary killed during a canary watch: the new leader fails the canary, rolls back, and push-build says so', async (t) => {
  const c = await startCluster(t)
  await pushQuick(c, 'v1', 'b1')
  for (const n of [...c.apps, c.fs]) await serving(n, 'b1')

  const pushing = admin(['push-build', writeVersion('v2'), '--canary', '1', '--canary-time', '1h', '--seed', c.list])
  await serving(c.apps[0]!, 'b2')
  await waitFor('the fileserver staged b2', async () => (await get(c.fs.port, '/app/public/asset-v2.js')).status === 200, 30_000)
  // The leader first: killed the other way round, the leader sees its canary leave and fails the canary itself.
  c.leader.proc.kill('SIGKILL')
  await killHard(c.apps[0]!)
  await c.follower.waitForLog((l) => l.msg === 'seed leads the cluster', 'the other seed takes over', 20_000)
  await c.follower.waitForLog((l) => /^canary of build b2 resumed/.test(String(l.msg)), 'the watch goes on', 30_000)
  const r = await pushing
  t.equal(r.code, 1, 'push-build does not claim the deploy went through')
  t.match(r.stderr, /ESPRA_ERR_BUILD_CANARY_FAILED: build b2 failed its canary.*canary app-1 did not come back to the leader that took over/)
  t.match(r.stderr, /build b2: the new leader goes on watching its canary once the nodes have re-registered/)
  await waitFor('the fileserver dropped the staged b2', async () => (await get(c.fs.port, '/app/public/asset-v2.js')).status === 404, 30_000)
  const listed = JSON.parse((await admin(['builds', '--json', '--seed', c.list])).stdout) as { id: string; state: string; current: boolean }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'canary-failed', current: false }, { id: 'b1', state: 'live', current: true }])
  t.match(await get(c.apps[1]!.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } }, 'the other app node still serves b1')
  t.same(servedBuilds(c.apps[1]!), ['b1'], 'and never served b2')
})
