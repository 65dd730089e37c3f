// Heavy dependencies load only in the processes that use them: every process loads its role's module at start,
// so a static import path from a role to the AWS SDK, Redis, PostgreSQL, LMDB or a mail library costs every
// process of that role the package (the AWS SDK alone: about 20 MB and 200 ms), chosen backend or not.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'

const ROOT = resolve(import.meta.dirname, '..')
const HEAVY = ['@aws-sdk/', 'ioredis', 'pg', 'lmdb', 'mailparser', 'mailauth', 'nodemailer', 'smtp-server']

/** Every package reached through static imports (not `import()`) from `entry`, with one file that imports it. */
function staticPackages(entry: string): { files: number; packages: Map<string, string> } {
  const found = new Map<string, string>()
  const seen = new Set<string>()
  const stack = [resolve(ROOT, entry)]
  while (stack.length > 0) {
    const file = stack.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/^\s*(?:import|export)\s(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) {
      const spec = (m[1] ?? m[2])!
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'))
        if (existsSync(target)) stack.push(target)
      } else if (!spec.startsWith('node:') && !found.has(spec)) found.set(spec, relative(ROOT, file))
    }
  }
  return { files: seen.size, packages: found }
}

const heavy = (spec: string) => HEAVY.some((h) => (h.endsWith('/') ? spec.startsWith(h) : spec === h || spec.startsWith(`${h}/`)))

/** What each entry may load statically: only the mail role needs its mail libraries in every process. */
const ALLOWED: Record<string, readonly string[]> = {
  'bin/espra-node.ts': [],
  'bin/program.ts': [],
  'seed/role.ts': [],
  'roles/proxy/role.ts': [],
  'roles/live/role.ts': [],
  'roles/fileserver/role.ts': [],
  'roles/app/role.ts': [],
  'roles/admin/role.ts': [],
  'roles/mail/role.ts': ['mailauth', 'nodemailer', 'smtp-server'],
}

// The admin commands (`espra-node admin …`), each loaded by bin/ when it runs: a command loads only the backend it uses.
for (const command of ['builds', 'cli', 'drain', 'mail-inbound', 'mail-out', 'maintenance', 'rolling-restart', 'status', 'tasks', 'token', 'upload-token', 'vhost']) {
  ALLOWED[`lib/cli/admin/${command}.ts`] = []
}

for (const [entry, allowed] of Object.entries(ALLOWED)) {
  t.test(`${entry} loads no backend it may not use`, async (t) => {
    const { files, packages } = staticPackages(entry)
    t.ok(files > 5, `the walk followed its imports (${files} files)`)
    for (const [spec, from] of packages) {
      if (heavy(spec)) t.ok(allowed.some((a) => spec === a || spec.startsWith(`${a}/`)), `${spec}, statically from ${from}`)
    }
  })
}
