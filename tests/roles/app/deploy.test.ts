// Two-phase deploys with real processes: a seed, two app nodes and a fileserver, builds pushed with the
// real `admin push-build`. A build is live on every node when push-build returns; one whose init throws
// or never returns (`for(;;){}` past --init-timeout) is current nowhere and push-build names who refused
// it; a push while another stages replaces it.
import { readdirSync } from 'node:fs'
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get, health, waitFor, type StartedNode } from '../../helpers/cluster.js'

interface Version {
  init?: string
}

/** A build whose handler and public index both say `version`; `init` is the body of init(). */
function writeVersion(version: string, opts: Version = {}): string {
  return writeBuild({
    'server/index.js': `export async function init() { ${opts.init ?? ''} }\nexport function handle() { return ${JSON.stringify(version)} }\n`,
    'public/index.html': `<!doctype html><title>${version}</title>`,
  })
}

interface Listed { id: string; current: boolean; state: string; refused: { node: string; code: string; message: string }[] }

/** Threads of every child of a node (worker threads show up as tasks). */
const threads = (node: StartedNode) => node.childPids().reduce((n, pid) => n + readdirSync(`/proc/${pid}/task`).length, 0)

t.test('push-build returns when every node serves the build, or names the nodes that refused it', async (t) => {
  const cluster = await startAppCluster(t, { children: 2, threads: 1, 'init-timeout': '2s' })
  const apps = [await cluster.startApp(), await cluster.startApp()]
  const fs = await cluster.startFileserver({ children: 2 })
  const seed = ['--seed', cluster.seedAddress]
  const builds = async () => JSON.parse((await admin(['builds', '--json', ...seed])).stdout) as Listed[]
  /** What each app node and the fileserver answer now, over fresh connections (so both children of each are asked). */
  async function answers(): Promise<string[]> {
    const out: string[] = []
    for (const app of apps) {
      for (let i = 0; i < 6; i++) {
        const a = await get(app.port, '/')
        out.push(`app:${a.status}:${a.body}:${a.headers['x-espra-build']}`)
      }
    }
    for (let i = 0; i < 6; i++) {
      const a = await get(fs.port, '/app/public/index.html')
      out.push(`fs:${a.status}:${/<title>(.*)<\/title>/.exec(a.body)?.[1]}:${a.headers['x-espra-build']}`)
    }
    return out
  }
  const all = (version: string, id: string) => [...Array(12).fill(`app:200:${version}:${id}`), ...Array(6).fill(`fs:200:${version}:${id}`)]

  await cluster.push(writeVersion('v1'), 'b1')
  t.same(await answers(), all('v1', 'b1'), 'b1 everywhere once push-build returned')
  // A slow init widens the window the old push-build left open: now it returns only after every node swapped.
  const b2 = await admin(['push-build', writeVersion('v2', { init: 'await new Promise((r) => setTimeout(r, 700))' }), ...seed])
  t.equal(b2.code, 0, b2.stderr)
  t.equal(b2.stdout, 'b2\n')
  t.same(await answers(), all('v2', 'b2'), 'right after push-build returns, every app node and the fileserver answer with b2')
  t.match(b2.stderr, /staging on 3 node\(s\): app-1, app-2, fs-1/, 'progress on stderr: who stages')
  for (const line of ['app-1 (app): staged', 'app-2 (app): staged', 'fs-1 (fileserver): staged', 'build b2 activated on 3 node(s)']) t.ok(b2.stderr.includes(line), line)

  // init throws: current nowhere, push-build fails naming both app nodes and their error.
  const b3 = await admin(['push-build', writeVersion('v3', { init: "throw new Error('init refused on purpose')" }), ...seed])
  t.not(b3.code, 0, 'push-build exits non-zero')
  t.equal(b3.stdout, '', 'prints no build id')
  t.match(b3.stderr, /ESPRA_ERR_BUILD_REFUSED/)
  for (const node of ['app-1', 'app-2']) t.match(b3.stderr, new RegExp(`${node} \\(ESPRA_ERR_APP_INIT: build b3 refused: init refused on purpose\\)`), `names ${node} and its error`)
  t.notMatch(b3.stderr, /fs-1 \(ESPRA/, 'the fileserver staged it and is not blamed')
  let listed = await builds()
  t.match(listed.find((b) => b.id === 'b3'), { current: false, state: 'refused', refused: [{ node: 'app-1', code: 'ESPRA_ERR_APP_INIT' }, { node: 'app-2', code: 'ESPRA_ERR_APP_INIT' }] }, 'admin builds: b3 refused, not current')
  t.match(listed.find((b) => b.id === 'b2'), { current: true, state: 'live' })
  t.same(await answers(), all('v2', 'b2'), 'the app and /app/public/index.html through the fileserver still b2')
  const table = await admin(['builds', ...seed])
  t.match(table.stdout, /b3 .* refused +- +- +app-1 \(ESPRA_ERR_APP_INIT\),app-2 \(ESPRA_ERR_APP_INIT\)/, 'the table shows the refused build (no canary, no node runs it)')

  // init never returns: refused at --init-timeout (2s) with its own code, the stuck workers terminated.
  const before = apps.map(threads)
  const b4 = await admin(['push-build', writeVersion('v4', { init: 'for (;;) {}' }), ...seed])
  t.not(b4.code, 0)
  for (const node of ['app-1', 'app-2']) t.match(b4.stderr, new RegExp(`${node} \\(ESPRA_ERR_BUILD_INIT_TIMEOUT: build b4 refused: init\\(\\) did not finish within 2000 ms`), `${node} refused it at the init timeout`)
  await waitFor('the stuck workers terminated', () => apps.every((app, i) => threads(app) <= before[i]!), 10_000)
  for (const app of apps) t.match((await health(app.port)).body, { health: 'ok', build: 'b2' }, 'health ok, still b2')
  listed = await builds()
  t.match(listed.find((b) => b.id === 'b4'), { current: false, state: 'refused' })
  // Nothing is blocked: the next push goes through.
  await cluster.push(writeVersion('v5'), 'b5')
  t.same(await answers(), all('v5', 'b5'), 'a later good push is live everywhere')
})

t.test('a push while another build stages replaces it; a rollback stages too', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1 })
  const app = await cluster.startApp()
  const seed = ['--seed', cluster.seedAddress]
  const answer = async () => {
    const a = await get(app.port, '/')
    return `${a.status}:${a.body}:${a.headers['x-espra-build']}`
  }
  await cluster.push(writeVersion('v1'), 'b1')
  // init waits long enough for the next push to arrive while this build stages (well under the 30 s --init-timeout).
  const slow = admin(['push-build', writeVersion('v2', { init: 'await new Promise((r) => setTimeout(r, 20000))' }), ...seed])
  await app.waitForLog((l) => l.msg === 'staging build' && l['build'] === 'b2', 'b2 staging', 60_000)
  t.equal(await answer(), '200:v1:b1', 'b1 serves while b2 stages')
  await cluster.push(writeVersion('v3'), 'b3')
  t.equal(await answer(), '200:v3:b3', 'b3 live when its push-build returned')
  const replaced = await slow
  t.not(replaced.code, 0, 'the replaced push exits non-zero')
  t.equal(replaced.stdout, '')
  t.match(replaced.stderr, /ESPRA_ERR_BUILD_REPLACED: build b2 was dropped (during its canary|while it was staging), so it is current nowhere: a newer push or rollback replaced it/)
  const listed = JSON.parse((await admin(['builds', '--json', ...seed])).stdout) as Listed[]
  t.match(listed, [{ id: 'b3', current: true, state: 'live' }, { id: 'b2', current: false, state: 'replaced' }, { id: 'b1', current: false, state: 'live' }])

  const back = await admin(['rollback', 'b1', ...seed])
  t.equal(back.code, 0, back.stderr)
  t.match(back.stderr, /rollback to b1: staging on 1 node\(s\)[\s\S]*app-1 \(app\): staged/)
  t.equal(await answer(), '200:v1:b1', 'rolled back when rollback returned')
})

t.test('a child that dies while a build stages does not block the deploy', async (t) => {
  const cluster = await startAppCluster(t, { children: 2, threads: 1 })
  const app = await cluster.startApp()
  await cluster.push(writeVersion('v1'), 'b1')
  const slow = admin(['push-build', writeVersion('v2', { init: 'await new Promise((r) => setTimeout(r, 3000))' }), '--seed', cluster.seedAddress])
  await app.waitForLog((l) => l.msg === 'staging build' && l['build'] === 'b2', 'b2 staging', 60_000)
  const [victim] = app.childPids()
  process.kill(victim!, 'SIGKILL')
  const pushed = await slow
  t.equal(pushed.code, 0, pushed.stderr)
  t.equal(pushed.stdout, 'b2\n')
  for (let i = 0; i < 6; i++) {
    const a = await get(app.port, '/')
    t.equal(`${a.status}:${a.body}:${a.headers['x-espra-build']}`, '200:v2:b2', 'every child answers b2, the restarted one too')
  }
})
