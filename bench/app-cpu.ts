/**
 * App CPU scaling bench: a handler that burns about 2 ms of CPU (a fixed
 * loop, calibrated here before anything starts: the same code, the same
 * count, whatever the load later) on two App nodes of one child each, one
 * with `--threads 1` and one with `--threads 2`, measured in alternating
 * rounds with wrk (enough connections to keep both workers busy), best kept.
 * Prints req/s of each and the scaling (target >= 1.7x on 2 cores), and
 * then what two plain Node processes running the same loop get over one
 * (the ceiling the shared machine allowed at the time). Needs
 * `npm run build` and `wrk`.
 *
 *   npx tsx bench/app-cpu.ts [--ms 2] [--duration 10] [--connections 8] [--rounds 2]
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { arg, helpFrom } from './args.js'
import { adopt, guard, tempDir } from './live-common.js'
import { get, pushBuild, startRegistered, startSeed, waitBuild } from './nodes.js'
import { bestOfRounds, formatMeasured, loadAverage, requireTools } from './wrk.js'

helpFrom(import.meta.url)

const MS = arg('ms', 2)
const DURATION_S = arg('duration', 10)
const CONNECTIONS = arg('connections', 8)
const ROUNDS = arg('rounds', 2)

/**
 * The application: `?n=` iterations of integer work; also imported here to
 * calibrate n. Int32 only: an addition that can overflow made V8 deoptimize
 * the loop after a while and run it about 3x slower for the rest of the run.
 */
const SERVER = `
export function burn(n) {
  let x = 0x1e3779b9
  for (let i = 0; i < n; i++) x = Math.imul(x ^ (x >>> 15), 0x85ebca6b) ^ i
  return x
}
export function handle(request) {
  return { headers: { 'content-type': 'text/plain' }, body: String(burn(Number(request.searchParams.get('n')))) }
}
`

/**
 * What the machine gives right now, outside the platform: burn() loops done
 * in `seconds` by one plain Node process alone, then by two at once. Other
 * sessions' load shows here first: when two processes do not reach 2x, the
 * app cannot either.
 */
async function machineScaling(seconds: number): Promise<{ one: number; two: number }> {
  const file = join(tempDir('espra-bench-cpu-'), 'loop.mjs')
  writeFileSync(file, `${SERVER}\nconst end = Date.now() + ${seconds * 1000}; let k = 0; while (Date.now() < end) { burn(1e6); k++ }\nconsole.log(k)\n`)
  const run = () => new Promise<number>((resolve, reject) => {
    const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] })
    adopt(p)
    let out = ''
    p.stdout.on('data', (d) => (out += d))
    p.on('close', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`burn loop exited ${code}`))))
  })
  const one = await run()
  const two = (await Promise.all([run(), run()])).reduce((a, b) => a + b, 0)
  return { one, two }
}

/** Iterations of burn() that take `ms` of this process's CPU (median of several tries, after warm-up). */
async function calibrate(ms: number): Promise<number> {
  const file = join(tempDir('espra-bench-cpu-'), 'server.mjs')
  writeFileSync(file, SERVER)
  const { burn } = (await import(pathToFileURL(file).href)) as { burn: (n: number) => number }
  const n = 1_000_000
  const perMs: number[] = []
  for (let i = 0; i < 30; i++) {
    const before = process.cpuUsage()
    burn(n)
    const used = process.cpuUsage(before)
    if (i >= 10) perMs.push(n / ((used.user + used.system) / 1000))
  }
  perMs.sort((a, b) => a - b)
  return Math.round(perMs[perMs.length >> 1]! * ms)
}

async function main(): Promise<void> {
  requireTools('wrk')
  guard((ROUNDS * 2 * (DURATION_S + 5) + 120) * 1000)
  const n = await calibrate(MS)
  const seed = await startSeed()
  const one = await startRegistered('app', seed, { children: 1, threads: 1, 'node-id': 'app-threads-1' })
  const two = await startRegistered('app', seed, { children: 1, threads: 2, 'node-id': 'app-threads-2' })
  const build = await pushBuild(seed, { 'server/index.js': SERVER }, 'bench/app-cpu')
  await Promise.all([waitBuild(one, build), waitBuild(two, build)])
  const path = `/burn?n=${n}`
  const t0 = performance.now()
  for (let i = 0; i < 20; i++) await get(one.port, path)
  console.log(`burn(${n}) = ${MS} ms of CPU here (calibrated, idle-ish: load ${loadAverage()}); one request at a time through the app: ${((performance.now() - t0) / 20).toFixed(2)} ms each`)
  console.log(`two app nodes, one child each: --threads 1 (pid ${one.pid}) and --threads 2 (pid ${two.pid}); wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, ${ROUNDS} round(s), best kept`)
  const best = await bestOfRounds([
    { name: '--threads 1', url: `http://127.0.0.1:${one.port}${path}`, pids: () => [one.pid, ...one.children()] },
    { name: '--threads 2', url: `http://127.0.0.1:${two.port}${path}`, pids: () => [two.pid, ...two.children()] },
  ], ROUNDS, { threads: 1, connections: CONNECTIONS, durationS: DURATION_S })
  console.log(`best (load average after: ${loadAverage()}):`)
  for (const [name, m] of best) console.log(`  ${formatMeasured(name, m)}`)
  const scaling = best.get('--threads 2')!.rps / best.get('--threads 1')!.rps
  const machine = await machineScaling(3)
  console.log(`two plain Node processes looping burn() right after: ${(machine.two / machine.one).toFixed(2)}x one (${machine.one} and ${machine.two} loops in 3 s): the most this machine gave at the time`)
  console.log(`--threads 2 / --threads 1: ${scaling.toFixed(2)}x req/s (target >= 1.7: ${scaling >= 1.7 ? 'met' : 'MISSED'}; ideal on 2 idle cores: ${(1000 / MS).toFixed(0)} and ${(2000 / MS).toFixed(0)} req/s)`)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
