/**
 * What each role costs a process before it does anything: every node
 * process (parent and each child) imports its role's module at start. Each
 * round imports one role module in a fresh `node` and reports the time the
 * import took and the process's RSS after it; median of the rounds, per
 * role. With `--against <dir>` (another checkout with its own `npm run
 * build`) both trees are measured alternately in the same run, so a change
 * is compared under the same load. Needs `npm run build`.
 *
 *   npx tsx bench/role-load.ts [--rounds 5] [--against ../main]
 */
import { execFileSync } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { arg, helpFrom } from './args.js'

helpFrom(import.meta.url)

const ROLE_MODULES = ['seed/role.js', 'roles/proxy/role.js', 'roles/live/role.js', 'roles/fileserver/role.js', 'roles/app/role.js', 'roles/mail/role.js', 'roles/admin/role.js']
const PROBE = `const t = performance.now(); await import(process.argv[1]); console.log(JSON.stringify({ ms: performance.now() - t, rss: process.memoryUsage().rss }))`

const rounds = arg('rounds', 5)
const againstAt = process.argv.indexOf('--against')
const trees = [resolve(import.meta.dirname, '..'), ...(againstAt >= 0 ? [resolve(process.argv[againstAt + 1]!)] : [])]

function measure(tree: string, module: string): { ms: number; rss: number } {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', PROBE, pathToFileURL(resolve(tree, 'dist', module)).href], { encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop()!) as { ms: number; rss: number }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores)`)
console.log(['role module', ...trees.map((t) => `${t}: import ms / RSS MB`)].join(' | '))
for (const module of ROLE_MODULES) {
  const samples = trees.map(() => ({ ms: [] as number[], rss: [] as number[] }))
  for (let i = 0; i < rounds; i++) {
    trees.forEach((tree, j) => {
      const m = measure(tree, module)
      samples[j]!.ms.push(m.ms)
      samples[j]!.rss.push(m.rss)
    })
  }
  console.log([module, ...samples.map((s) => `${Math.round(median(s.ms))} ms / ${(median(s.rss) / 2 ** 20).toFixed(1)} MB`)].join(' | '))
}
console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
