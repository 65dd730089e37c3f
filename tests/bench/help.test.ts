// Every bench script answers --help with its usage (what it measures, what it needs, its arguments) and measures nothing.
import t from 'tap'
import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const ROOT = resolve(import.meta.dirname, '../..')
const TSX = join(ROOT, 'node_modules/.bin/tsx')
// Modules the benches share, and load processes they start: not run on their own.
const NOT_RUN = new Set(['args.ts', 'wrk.ts', 'nodes.ts', 'live-common.ts', 'live-load.ts', 'live-failover-load.ts', 'seed-failover-workers.ts', 'seed-scale-workers.ts'])

const scripts = readdirSync(join(ROOT, 'bench')).filter((f) => f.endsWith('.ts') && !NOT_RUN.has(f))

t.ok(scripts.length >= 15, `${scripts.length} bench scripts`)
for (const script of scripts) {
  t.test(`bench/${script} --help`, async (t) => {
    const { stdout } = await promisify(execFile)(TSX, [join('bench', script), '--help'], { cwd: ROOT, timeout: 60_000 })
    t.match(stdout, `bench/${script}`, 'prints its usage line')
    t.notMatch(stdout, /load average before: \d|round 1 /, 'and measures nothing')
  })
}
