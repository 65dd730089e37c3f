/**
 * App dispatch bench: a trivial handler (`handle()` returns 'hello world'
 * with a content type) through one App node (`--children C --threads T`:
 * uWS on each child's main thread, the request copied to a worker thread and
 * the answer back; by default 2 children of 2 threads, the node's own
 * defaults on this 2-core machine) versus the same module's `handle()`
 * called directly in a plain uWS server (C processes sharing the port, as
 * the node's children do).
 * wrk with keep-alive, alternating rounds, best kept; prints req/s, latency,
 * server CPU and the ratio (target >= 0.5). Needs `npm run build` and `wrk`.
 *
 *   npx tsx bench/app-dispatch.ts [--children 2] [--threads 2] [--duration 10] [--connections 50] [--wrk-threads 2] [--rounds 2]
 */
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { arg, helpFrom } from './args.js'
import { adopt, freePorts, guard, tempDir } from './live-common.js'
import { get, pushBuild, startRegistered, startSeed, waitBuild, waitServing, writeTree } from './nodes.js'
import { bestOfRounds, formatMeasured, loadAverage, requireTools } from './wrk.js'

helpFrom(import.meta.url)

const CHILDREN = arg('children', 2)
const THREADS = arg('threads', 2)
const DURATION_S = arg('duration', 10)
const CONNECTIONS = arg('connections', 50)
const WRK_THREADS = arg('wrk-threads', 2)
const ROUNDS = arg('rounds', 2)
const UWS = resolve(import.meta.dirname, '../dist/lib/http/uws.js')

/** The application: a build's server entry, and the module the plain uWS server imports. */
const HANDLER = `
const headers = { 'content-type': 'text/plain' }
export function handle(request) {
  return { status: 200, headers, body: 'hello world' }
}
`

/** A plain uWS server calling the same `handle` (what one would write without the platform). */
function baselineCode(entry: string, port: number): string {
  return `
    const { uws } = await import(${JSON.stringify(UWS)});
    const { handle } = await import(${JSON.stringify(entry)});
    uws.App().any('/*', (res, req) => {
      const r = handle({ method: req.getMethod().toUpperCase(), path: req.getUrl(), query: req.getQuery() ?? '', headers: {} });
      res.writeStatus(r.status === 200 ? '200 OK' : String(r.status));
      for (const [name, value] of Object.entries(r.headers)) res.writeHeader(name, value);
      res.end(r.body);
    }).listen('127.0.0.1', ${port}, (s) => { if (!s) process.exit(1) });`
}

async function main(): Promise<void> {
  requireTools('wrk')
  guard((ROUNDS * 2 * (DURATION_S + 5) + 120) * 1000)
  const seed = await startSeed()
  const app = await startRegistered('app', seed, { children: CHILDREN, threads: THREADS })
  const build = await pushBuild(seed, { 'server/index.js': HANDLER }, 'bench/app-dispatch')
  await waitBuild(app, build)

  const dir = tempDir('espra-bench-dispatch-')
  writeTree(dir, { 'handler.mjs': HANDLER })
  const port = await freePorts()
  const baseline = Array.from({ length: CHILDREN }, () => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', baselineCode(join(dir, 'handler.mjs'), port)], { stdio: ['ignore', 'inherit', 'inherit'] })
    adopt(p)
    return p
  })
  await waitServing(port, '/')
  const [a, b] = await Promise.all([get(app.port, '/hello'), get(port, '/hello')])
  if (a.body.toString() !== 'hello world' || b.body.toString() !== 'hello world') throw new Error(`answers differ: ${a.status} ${a.body} / ${b.status} ${b.body}`)

  console.log(`app node pid ${app.pid} (--children ${CHILDREN} --threads ${THREADS}, processes ${[app.pid, ...app.children()].join(',')}); plain uWS: ${CHILDREN} process(es) ${baseline.map((p) => p.pid).join(',')}`)
  console.log(`wrk -t${WRK_THREADS} -c${CONNECTIONS} -d${DURATION_S}s --latency (keep-alive, not pinned, same for both), ${ROUNDS} round(s), best kept; load average before: ${loadAverage()}`)
  const best = await bestOfRounds([
    { name: 'plain uWS + handle()', url: `http://127.0.0.1:${port}/hello`, pids: () => baseline.map((p) => p.pid!) },
    { name: 'espra app node', url: `http://127.0.0.1:${app.port}/hello`, pids: () => [app.pid, ...app.children()] },
  ], ROUNDS, { threads: WRK_THREADS, connections: CONNECTIONS, durationS: DURATION_S })
  console.log(`best (load average after: ${loadAverage()}):`)
  for (const [name, m] of best) console.log(`  ${formatMeasured(name, m)}`)
  const ratio = best.get('espra app node')!.rps / best.get('plain uWS + handle()')!.rps
  console.log(`app / plain uWS: ${ratio.toFixed(2)}x req/s (target >= 0.5: ${ratio >= 0.5 ? 'met' : 'MISSED'})`)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
