// docs/errors.md is the error table (lib/core/errors.ts) as published, and every code the sources use is in it.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { errorsMarkdown } from '../lib/core/errors-doc.js'
import { ERRORS } from '../lib/core/errors.js'

const ROOT = resolve(import.meta.dirname, '..')

t.test('docs/errors.md is generated from the table (npm run docs:errors)', async (t) => {
  t.equal(readFileSync(join(ROOT, 'docs/errors.md'), 'utf8'), errorsMarkdown(), 'run `npm run docs:errors` after changing lib/core/errors.ts')
  for (const code of Object.keys(ERRORS)) t.ok(errorsMarkdown().includes(`| \`${code}\` |`), code)
})

t.test('every ESPRA_ERR_ code written in the sources is in the table', async (t) => {
  const used = new Set<string>()
  for (const dir of ['bin', 'lib', 'roles', 'seed']) {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue
      for (const m of readFileSync(join(e.parentPath, e.name), 'utf8').matchAll(/ESPRA_ERR_[A-Z0-9_]*[A-Z0-9]/g)) used.add(m[0])
    }
  }
  t.ok(used.size > 50, `found ${used.size} codes`)
  for (const code of used) t.ok(code in ERRORS, `${code} is in lib/core/errors.ts`)
})
