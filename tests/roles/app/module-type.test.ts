// Regression: a `package.json` with "type": "commonjs" in a folder above the data directory (what
// `npm init -y` writes, so `npx espra-node up` inside an ordinary project) made every build's
// `export` a syntax error. Builds load as ES modules whatever surrounds the data directory.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { health, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

t.test('a CommonJS package.json above the data directory: the build still loads as ES modules', async (t) => {
  const project = testDir('espra-cjs-project-')
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'someones-project', version: '1.0.0', type: 'commonjs' }))
  const dataDir = join(project, 'state', '.espra')
  mkdirSync(dataDir, { recursive: true })

  const cluster = await startAppCluster(t)
  const app = await cluster.startApp({ 'data-dir': dataDir, children: 1, threads: 1 })
  const build = writeBuild({
    'server/helper.js': 'export const WORD = "esm"\n',
    'server/index.js': `import { WORD } from './helper.js'
export async function handle() { return { status: 200, headers: { 'content-type': 'text/plain' }, body: 'loaded as ' + WORD + ' ' + typeof require } }
`,
  })
  await cluster.push(build, 'b1')
  await cluster.serving(app, 'b1')
  const h = await health(app.port)
  t.notOk(h.body['buildRefused'], 'the build was not refused')
  const res = await waitFor('the app answers', async () => {
    const r = await fetch(`http://127.0.0.1:${app.port}/`)
    return r.status === 200 && r.text()
  })
  t.equal(res, 'loaded as esm undefined', 'ES module semantics (no require)')
  t.match(JSON.parse(readFileSync(join(dataDir, 'app-builds', 'package.json'), 'utf8')), { type: 'module' }, 'app-builds/ says type: module')

  // A second build is pruned around, never the marker.
  await cluster.push(writeBuild({ 'server/index.js': 'export async function handle() { return { body: "two" } }\n' }), 'b2')
  await cluster.serving(app, 'b2')
  await cluster.push(writeBuild({ 'server/index.js': 'export async function handle() { return { body: "three" } }\n' }), 'b3')
  await cluster.serving(app, 'b3')
  t.equal(await (await fetch(`http://127.0.0.1:${app.port}/`)).text(), 'three')
  t.match(JSON.parse(readFileSync(join(dataDir, 'app-builds', 'package.json'), 'utf8')), { type: 'module' }, 'the marker survives pruning')
  const listed = await admin(['builds', '--json', '--seed', cluster.seedAddress])
  t.equal(listed.code, 0)
  t.same((JSON.parse(listed.stdout) as { refused: unknown[] }[]).flatMap((b) => b.refused), [], 'no node refused any build')
})
