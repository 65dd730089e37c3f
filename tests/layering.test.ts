// Imports point down: lib/core <- lib/* <- roles/*, seed/ <- bin/. A broken rule fails here.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const ROOT = resolve(import.meta.dirname, '..')

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)))
}

/** Repository-relative targets of a file's relative imports. */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  return [...text.matchAll(/from\s+['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1]!)))
}

const files = [...sources('lib'), ...sources('roles'), ...sources('seed')]

t.test('the tree has sources to check', async (t) => {
  t.ok(files.some((f) => f.startsWith('lib/core/')))
  t.ok(files.some((f) => f.startsWith('roles/')))
})

t.test('lib never imports roles/ or seed/, lib/core imports only lib/core', async (t) => {
  for (const file of files.filter((f) => f.startsWith('lib/'))) {
    for (const target of imports(file)) {
      t.notOk(/^(roles|seed|bin)\//.test(target), `${file} -> ${target}`)
      if (file.startsWith('lib/core/')) t.ok(target.startsWith('lib/core/'), `${file} -> ${target}`)
    }
  }
})

t.test('roles never import each other; only the registry sees them all', async (t) => {
  for (const file of files.filter((f) => f.startsWith('roles/') || f.startsWith('seed/'))) {
    const own = file.split('/').slice(0, file.startsWith('seed/') ? 1 : 2).join('/')
    for (const target of imports(file)) {
      if (file === 'roles/registry.ts') continue
      const crossesRole = /^(roles\/[^/]+|seed)\//.test(target) && !target.startsWith(`${own}/`)
      t.notOk(crossesRole, `${file} -> ${target}`)
    }
  }
})
