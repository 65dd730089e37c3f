// Canary deploys with real processes: a seed, two app nodes and a fileserver, builds pushed with the real
// `admin push-build --canary`, load driven straight at both app nodes during the watch. A build whose
// handler answers 500 to one request in five is rolled back by the seed (push-build exits 1 with the
// figures, the other app node never served it); a good one goes on to every node. Bad flags exit 2.
import { Agent } from 'node:http'
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get, health } from '../../helpers/cluster.js'

/** A build answering `version`; with `failEvery`, every n-th request of each worker answers 500. Its public files name the version. */
function writeVersion(version: string, failEvery = 0): string {
  return writeBuild({
    'server/index.js': `let n = 0\nexport function handle() {\n  n++\n  if (${failEvery} > 0 && n % ${failEvery} === 0) return { status: 500, body: 'failed on purpose' }\n  return ${JSON.stringify(version)}\n}\n`,
    'public/index.html': `<!doctype html><title>${version}</title><script src="asset-${version}.js"></script>`,
    [`public/asset-${version}.js`]: `console.log(${JSON.stringify(version)})`,
  })
}

/** Keep-alive load at one port until stopped: counts answers by `status:build`. */
function drive(port: number, connections: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections })
  const seen: Record<string, number> = {}
  let running = true
  const loops = Array.from({ length: connections }, async () => {
    while (running) {
      try {
        const a = await get(port, '/', agent)
        const key = `${a.status}:${a.headers['x-espra-build']}`
        seen[key] = (seen[key] ?? 0) + 1
      } catch (err) {
        const key = `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`
        seen[key] = (seen[key] ?? 0) + 1
      }
    }
  })
  return async () => {
    running = false
    await Promise.all(loops)
    agent.destroy()
    return seen
  }
}

interface Listed { id: string; current: boolean; state: string; canary: { verdict: string; nodes: string[]; reasons: string[]; canary: { requests: number; errorRate: number }; baseline: { requests: number; errorRate: number } } | null }

t.test('push-build --canary and --canary-time refuse bad values with one line, exit 2', async (t) => {
  const dir = writeVersion('x')
  const cases: [string[], RegExp][] = [
    [['--canary', '0'], /--canary: must be a number of app nodes/], [['--canary', '-1'], /--canary: must be/], [['--canary', '100%'], /--canary: must be/],
    [['--canary', '0%'], /--canary: must be/], [['--canary', '150%'], /--canary: must be/], [['--canary', 'two'], /--canary: must be/],
    [['--canary', '1.5'], /--canary: must be/], [['--canary', '5000'], /--canary: at most 1000 nodes/],
    [['--canary', '1', '--canary-time', '4s'], /--canary-time: must be from 5s to 1h/], [['--canary', '1', '--canary-time', '2h'], /--canary-time: must be from 5s to 1h/],
    [['--canary', '1', '--canary-time', 'soon'], /--canary-time: must be a duration/], [['--canary-time', '60s'], /--canary-time: only with --canary/],
  ]
  for (const [flags, message] of cases) {
    // No seed runs at this address: a refusal happens before any connection.
    const r = await admin(['push-build', dir, ...flags, '--seed', '127.0.0.1:1'])
    t.equal(r.code, 2, `${flags.join(' ')}: exit 2`)
    t.match(r.stderr, message)
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }
})

t.test('a canary answering 500 to one request in five is rolled back by itself; a good one proceeds', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1 })
  const apps = [await cluster.startApp(), await cluster.startApp()]
  const fs = await cluster.startFileserver({ children: 1 })
  const seed = ['--seed', cluster.seedAddress]
  const builds = async () => JSON.parse((await admin(['builds', '--json', ...seed])).stdout) as Listed[]
  await cluster.push(writeVersion('v1'), 'b1')

  const only = await admin(['push-build', writeVersion('x'), '--canary', '2', ...seed])
  t.equal(only.code, 2, 'every app node a canary is refused like a bad flag')
  t.equal(only.stderr.trim().split('\n').at(-1), 'espra-node: --canary 2: a canary deploy cannot run now: 2 canary node(s) would leave no app node to compare with: 2 can stage builds now')

  // The bad build: app-1 (first by id) takes it; load at both app nodes through the watch.
  const pushing = admin(['push-build', writeVersion('v2', 5), '--canary', '1', '--canary-time', '6s', ...seed])
  await cluster.serving(apps[0]!, 'b2')
  // Meanwhile the fileserver keeps b1 for every path b1 has and answers b2's new asset from the staged b2
  // (asked before the load starts: a clearly bad canary fails early, and the staged b2 is dropped then).
  const index = await get(fs.port, '/app/public/index.html')
  t.match(index, { status: 200, headers: { 'x-espra-build': 'b1' }, body: /<title>v1<\/title>/ }, 'the old index for the other app node\'s pages')
  t.match(await get(fs.port, '/app/public/asset-v2.js'), { status: 200, headers: { 'x-espra-build': 'b2' } }, 'the canary\'s new asset loads')
  t.match(await get(fs.port, '/app/public/asset-v1.js'), { status: 200, headers: { 'x-espra-build': 'b1' } })
  const loads = apps.map((app) => drive(app.port, 4))
  const bad = await pushing
  const [onCanary, onOther] = await Promise.all(loads.map((stop) => stop()))
  t.comment(`bad canary: app-1 answers ${JSON.stringify(onCanary)}; app-2 answers ${JSON.stringify(onOther)}`)
  t.comment(bad.stderr.trim())
  t.equal(bad.code, 1, 'push-build exits 1')
  t.equal(bad.stdout, '', 'no build id printed')
  t.match(bad.stderr, /build b2 current on canary node\(s\) app-1 only; the seed watches them for 6s against app-2/)
  t.match(bad.stderr, /canary app-1: \d+ answers, \d+ 5xx \((19|20|21)\.\d\d %\)/, 'the canary figures')
  t.match(bad.stderr, /baseline app-2: \d+ answers, 0 5xx \(0\.00 %\)/, 'the baseline figures')
  t.match(bad.stderr, /ESPRA_ERR_BUILD_CANARY_FAILED: build b2 failed its canary and is current nowhere \(canaries rolled back\): 5xx rate (19|20|21)\.\d\d % over twice the limit 1\.00 % after \d+ answers/, 'failed early: clearly over the limit')
  t.ok((onCanary!['500:b2'] ?? 0) > 0, 'the canary served b2, with 500s')
  t.notOk(Object.keys(onOther!).some((k) => k.endsWith(':b2')), 'the other app node never served b2')
  t.same(Object.keys(onOther!), ['200:b1'], 'the other app node answered every request 200 with b1')
  await cluster.serving(apps[0]!, 'b1')
  const stagedB1 = apps[0]!.logs.filter((l) => l.msg === 'app build staged' && l['build'] === 'b1').length
  t.equal(stagedB1, 2, 'b1 staged twice on the canary: at its own push, and as the standby the canary swapped back to')
  t.notOk(apps[0]!.logs.some((l) => /could not tell the seed/.test(l.msg)), 'the seed took the standby\'s build.staged')
  for (let i = 0; i < 4; i++) t.match(await get(apps[0]!.port, '/'), { status: 200, body: 'v1', headers: { 'x-espra-build': 'b1' } }, 'the canary is back on b1')
  t.match(await get(fs.port, '/app/public/asset-v2.js'), { status: 404 }, 'the staged b2 is dropped on the fileserver')
  t.equal((await health(apps[1]!.port)).body['build'], 'b1')
  const listed = await builds()
  t.match(listed.find((b) => b.id === 'b2'), { current: false, state: 'canary-failed', canary: { verdict: 'failed', nodes: ['app-1'], reasons: [/5xx rate/] } })
  t.match(listed.find((b) => b.id === 'b1'), { current: true })
  const table = await admin(['builds', ...seed])
  t.match(table.stdout, /b2 .* canary-failed +app-1 failed/, 'the table shows the failed canary')
  t.match(table.stdout, /b2 canary failed: 5xx rate [\s\S]*canary app-1: [\s\S]*baseline app-2: /, 'and its figures')

  // A good build: 50 % of two app nodes is one canary; under the same load it passes and goes everywhere.
  const good = admin(['push-build', writeVersion('v3'), '--canary', '50%', '--canary-time', '5s', ...seed])
  await cluster.serving(apps[0]!, 'b3')
  const loads3 = apps.map((app) => drive(app.port, 4))
  const passed = await good
  const seen3 = await Promise.all(loads3.map((stop) => stop()))
  t.comment(`good canary: ${JSON.stringify(seen3)}`)
  t.comment(passed.stderr.trim())
  t.equal(passed.code, 0, passed.stderr)
  t.equal(passed.stdout, 'b3\n')
  t.match(passed.stderr, /canary app-1: \d+ answers, 0 5xx \(0\.00 %\)[\s\S]*canary passed[\s\S]*build b3 activated/)
  t.ok(seen3.every((seen) => Object.keys(seen).every((k) => k.startsWith('200:'))), 'every answer during the good canary was 200')
  for (const app of apps) t.match(await get(app.port, '/'), { status: 200, body: 'v3', headers: { 'x-espra-build': 'b3' } }, 'every app node serves b3')
  t.match(await get(fs.port, '/app/public/index.html'), { status: 200, headers: { 'x-espra-build': 'b3' }, body: /<title>v3<\/title>/ })
  t.match((await builds()).find((b) => b.id === 'b3'), { current: true, state: 'live', canary: { verdict: 'passed' } })
})
