// A seed restarted during a canary deploy, with real processes: the previous build is current again on
// every node (the canary loads it back, the other app node and the fileserver drop the staged build),
// the build shows `abandoned`, and the next push goes through.
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get, health, startNode, waitFor } from '../../helpers/cluster.js'

const writeVersion = (version: string) => writeBuild({
  'server/index.js': `export function handle() { return ${JSON.stringify(version)} }\n`,
  'public/index.html': `<!doctype html><title>${version}</title>`,
  [`public/asset-${version}.js`]: `console.log(${JSON.stringify(version)})`,
})

t.test('a seed restart mid-canary leaves the previous build current everywhere', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1 })
  const apps = [await cluster.startApp(), await cluster.startApp()]
  const fs = await cluster.startFileserver({ children: 1 })
  const seed = ['--seed', cluster.seedAddress]
  await cluster.push(writeVersion('v1'), 'b1')

  const pushing = admin(['push-build', writeVersion('v2'), '--canary', '1', '--canary-time', '1h', ...seed])
  await cluster.serving(apps[0]!, 'b2')
  t.match(await get(fs.port, '/app/public/asset-v2.js'), { status: 200, headers: { 'x-espra-build': 'b2' } }, 'staged b2 on the fileserver')

  // Same meta port, data directory and blob directory; the nodes reconnect by themselves.
  const dataDir = cluster.seed.proc.spawnargs.find((a) => a.startsWith('--data-dir='))!.slice('--data-dir='.length)
  await cluster.seed.stop()
  const cut = await pushing
  t.not(cut.code, 0, 'push-build loses its seed and exits non-zero')
  const again = await startNode(t, 'seed', {
    'meta-port': Number(cluster.seedAddress.split(':')[1]), 'data-dir': dataDir, 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0',
  })
  t.ok(again.logs.some((l) => l.msg === 'build store open' && l['current'] === 'b1'), 'the restarted seed has b1 current')
  await cluster.serving(apps[0]!, 'b1')
  for (const app of apps) t.match(await get(app.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } }, 'b1 on both app nodes')
  t.equal((await health(apps[1]!.port)).body['build'], 'b1')
  await waitFor('the fileserver dropped the staged b2', async () => (await get(fs.port, '/app/public/asset-v2.js')).status === 404, 15_000)
  t.match(await get(fs.port, '/app/public/index.html'), { status: 200, headers: { 'x-espra-build': 'b1' } })
  const listed = JSON.parse((await admin(['builds', '--json', ...seed])).stdout) as { id: string; state: string; current: boolean }[]
  t.match(listed.slice(0, 2), [{ id: 'b2', state: 'abandoned', current: false }, { id: 'b1', state: 'live', current: true }])

  await cluster.push(writeVersion('v3'), 'b3')
  for (const app of apps) t.match(await get(app.port, '/'), { status: 200, body: 'v3' }, 'the next push goes through')
})
