// The `espra/layers` lint rule (eslint.config.js) against imports of every form, and the built tree free of import cycles.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { ESLint } from 'eslint'
import ts from 'typescript'

const ROOT = resolve(import.meta.dirname, '../..')
// The project's config, with typed linting off: the files linted here exist only as text, outside tsconfig.json.
const eslint = new ESLint({ cwd: ROOT, overrideConfig: { languageOptions: { parserOptions: { project: null } }, rules: { '@typescript-eslint/only-throw-error': 'off' } } })

/** The layer messages ESLint gives `code` written at `file`; anything else it says (a parse error) fails the test. */
async function refusals(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, file) })
  const other = result!.messages.filter((m) => m.ruleId !== 'espra/layers')
  if (other.length > 0) throw new Error(`${file}: ${other.map((m) => m.message).join('; ')}`)
  return result!.messages.filter((m) => m.ruleId === 'espra/layers').map((m) => m.message)
}

t.test('imports that point down pass', async (t) => {
  const allowed: [string, string][] = [
    ['lib/core/x.ts', "import { a } from './errors.js'"],
    ['lib/transport/x.ts', "import { a } from '../codec/frame.js'"],
    ['lib/process/x.ts', "import { a } from '../http/server.js'"],
    ['lib/cli/x.ts', "const m = await import('../process/child.js')"],
    ['lib/cli/admin/x.ts', "import { a } from '../up.js'\nimport { b } from './cli.js'\nconst m = await import('../../tasks/queue-redis.js')"],
    ['roles/admin/x.ts', "import { a } from '../../lib/cli/admin/status.js'"],
    ['roles/live/x.ts', "import { a } from '../../lib/live/channel.js'\nimport { b } from './hub.js'"],
    ['roles/registry.ts', "const r = await import('./live/role.js')"],
    ['seed/x.ts', "import { a } from '../lib/storage/x.js'\nimport { b } from './registry.js'"],
    ['bin/espra-node.ts', "import { a } from '../roles/registry.js'\nimport { b } from '../lib/cli/up.js'\nimport('../seed/datastore-copy.js')"],
    ['tests/x.test.ts', "import { a } from '../roles/live/hub.js'"],
    ['lib/core/x.ts', "import { EventEmitter } from 'node:events'\nimport pino from 'pino'"],
  ]
  for (const [file, code] of allowed) t.same(await refusals(file, code), [], `${file}: ${code}`)
})

t.test('imports that point up or across fail, whatever their form', async (t) => {
  const refused: [string, string, RegExp][] = [
    ['lib/core/x.ts', "import { a } from '../transport/meta-client.js'", /lib\/core \(layer 0\) may not import lib\/transport \(layer 2\)/],
    ['lib/transport/x.ts', "import { a } from '../storage/x.js'", /imports point down/],
    ['lib/storage/x.ts', "import { a } from '../http/server.js'", /lib\/storage \(layer 3\) may not import lib\/http \(layer 3\)/],
    ['lib/http/x.ts', "import '../process/child.js'", /imports point down/],
    ['lib/http/x.ts', "export * from '../process/child.js'", /imports point down/],
    ['lib/http/x.ts', "export { a } from '../cli/up.js'", /imports point down/],
    ['lib/http/x.ts', "const m = await import('../process/child.js')", /imports point down/],
    ['lib/storage/x.ts', "import { a } from '../../seed/registry.js'", /lib\/ never imports seed\//],
    ['lib/cli/x.ts', "const m = await import('../../roles/live/role.js')", /lib\/ never imports roles\//],
    ['lib/newthing/x.ts', "import { a } from '../core/errors.js'", /lib\/newthing has no layer/],
    ['roles/live/x.ts', "import { a } from '../proxy/core.js'", /roles never import each other/],
    ['roles/live/x.ts', "const m = await import('../app/pool.js')", /roles never import each other/],
    ['roles/live/x.ts', "import { a } from '../../seed/registry.js'", /roles never import each other/],
    ['seed/x.ts', "import { a } from '../roles/app/pool.js'", /seed\/ may import lib\/ and seed\/ only/],
    ['bin/espra-node.ts', "const m = await import('../roles/live/role.js')", /bin\/ reaches roles only through roles\/registry.ts/],
    ['bin/espra-node.ts', "const m = await import('../roles/admin/x.js')", /bin\/ reaches roles only through roles\/registry.ts/],
    ['bin/espra-node.ts', "import { a } from '../roles/admin/x.js'", /bin\/ reaches roles only through roles\/registry.ts/],
    ['lib/cli/admin/x.ts', "import { a } from '../../process/child.js'\nimport { b } from '../../../roles/admin/role.js'", /lib\/ never imports roles\//],
    ['lib/process/x.ts', "import { a } from '../cli/admin/status.js'", /lib\/process \(layer 6\) may not import lib\/cli \(layer 7\)/],
  ]
  for (const [file, code, message] of refused) {
    const found = await refusals(file, code)
    t.equal(found.length, 1, `${file}: ${code}`)
    t.match(found[0], message)
  }
})

// Cycles are looked for in the compiled tree (`npm test` builds first): it holds what runs, without the
// imports TypeScript drops because only their types are used.
const DIST = join(ROOT, 'dist')

function builtFiles(dir: string): string[] {
  return readdirSync(join(DIST, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js') && !e.parentPath.includes('/dashboard/client'))
    .map((e) => relative(DIST, join(e.parentPath, e.name)))
}

/** Files a built file imports (static, side-effect, re-export and `import('…')`), named by their sources. */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(join(DIST, file), 'utf8'), true, true)
  return importedFiles.filter((f) => f.fileName.startsWith('.')).map((f) => relative(DIST, resolve(DIST, dirname(file), f.fileName)))
}

/** Every cycle among `graph`'s nodes, each as a path that starts and ends at the same file. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    path.push(file)
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next])
      else if (!state.has(next)) visit(next)
    }
    path.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return found
}

t.test('the cycle finder finds a cycle', async (t) => {
  t.same(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c', 'a']])
  t.same(cycles(new Map([['a', ['b']], ['b', []]])), [])
})

t.test('no import cycles among lib/, roles/, seed/ and bin/ as built', async (t) => {
  const files = ['lib', 'roles', 'seed', 'bin'].flatMap(builtFiles)
  t.ok(files.length > 200, `${files.length} files read`)
  const graph = new Map(files.map((f) => [f, importsOf(f)]))
  t.ok(graph.get('bin/espra-node.js')!.includes('roles/registry.js'), 'static imports are seen')
  t.ok(graph.get('bin/program.js')!.includes('lib/cli/up.js'), 'dynamic imports are seen')
  t.same(cycles(graph).map((c) => c.join(' -> ')), [])
})
