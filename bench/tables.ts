/**
 * App tables bench (issue #15): `ctx.tables.set` and `ctx.tables.get` per
 * second as an application sees them, over HTTP through real app nodes, with
 * the tables in one embedded seed, in one seed on PostgreSQL, and in
 * `--seeds` seeds on one PostgreSQL. Each setup runs `--apps` app nodes
 * (1 child, 2 worker threads each) whose build answers `/set` with one
 * `tables.set` of a random key among `--keys` (a 100-byte value) and `/get`
 * with one `tables.get`; one wrk per app node runs at the same time
 * (`--connections` split over them), the set phase first so the get phase
 * reads rows that exist. App nodes get ids that pick different seeds, so
 * with several seeds every seed serves its share (printed from each seed's
 * /metrics). Printed per setup and op: requests/s summed over the app nodes,
 * the worst node's p50 and p99, non-2xx answers and socket errors; the load
 * average before and after. Seeds and app nodes are real processes from
 * dist; PostgreSQL is a real server started here (tests/helpers/postgres.ts).
 * Needs `npm run build`, `wrk` and Debian's `postgresql`.
 *
 *   npm run build && npx tsx bench/tables.ts [--duration 10] [--connections 32] [--apps 2] [--seeds 2] [--keys 10000]
 */
import { spreadOrder } from '../lib/process/seed-link.js'
import { startPostgres } from '../tests/helpers/postgres.js'
import { arg, helpFrom, sleep } from './args.js'
import { guard, killAll } from './live-common.js'
import { get, pushBuild, startPostgresSeeds, startRegistered, startSeed, waitBuild, type BenchSeed } from './nodes.js'
import { loadAverage, requireTools, wrk, type WrkFigures } from './wrk.js'

helpFrom(import.meta.url)

const DURATION_S = arg('duration', 10)
const CONNECTIONS = arg('connections', 32)
const APPS = arg('apps', 2)
const SEEDS = arg('seeds', 2)
const KEYS = arg('keys', 10_000)
const OPS = ['set', 'get'] as const

/** The build: one tables call per request, a random key each time. */
const SERVER = `
let tables
const pad = 'x'.repeat(100)
const key = () => 'k' + Math.floor(Math.random() * ${KEYS})
export async function init(ctx) { tables = ctx.tables }
export async function handle(request) {
  if (request.path === '/set') {
    await tables.set('bench', key(), { pad })
    return { status: 204 }
  }
  if (request.path === '/get') {
    const row = await tables.get('bench', key())
    return { status: 200, headers: { 'content-type': 'text/plain' }, body: row === undefined ? 'absent' : 'present' }
  }
  return { status: 404 }
}
`

/** `count` node ids, the i-th picking seed i of `seeds` (mod their count) first. */
function appIds(seeds: readonly string[], count: number): string[] {
  const ids: string[] = []
  for (let n = 0; ids.length < count; n++) {
    const id = `bench-app-${n}`
    if (spreadOrder(seeds, id)[0] === seeds[ids.length % seeds.length]) ids.push(id)
  }
  return ids
}

/** Table ops each seed served so far, from its /metrics (every `ds.*` op, which is what a tables call is). */
async function served(seed: BenchSeed): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${seed.node.port + 1000}/metrics`)).text()
  return text.split('\n').filter((l) => l.startsWith('espra_seed_datastore_op_duration_seconds_count')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0)
}

interface OpFigures {
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly errors: string
}

/** Starts the app nodes, pushes the build, then runs each op with one wrk per app node at once. */
async function runSetup(seeds: BenchSeed[]): Promise<{ figures: Map<string, OpFigures>; perSeed: number[] }> {
  const addresses = seeds.map((s) => s.address)
  const apps = await Promise.all(appIds(addresses, APPS).map((id) => startRegistered('app', seeds[0]!, { 'node-id': id, seed: addresses.join(','), children: 1, threads: 2 })))
  const build = await pushBuild(seeds[0]!, { 'server/index.js': SERVER }, 'bench/tables')
  await Promise.all(apps.map((app) => waitBuild(app, build)))
  for (const app of apps) {
    const answer = await get(app.port, '/set')
    if (answer.status !== 204) throw new Error(`/set answered ${answer.status}: ${answer.body}`)
  }
  const before = await Promise.all(seeds.map(served))
  const figures = new Map<string, OpFigures>()
  for (const op of OPS) {
    const runs: WrkFigures[] = await Promise.all(apps.map((app) => wrk(`http://127.0.0.1:${app.port}/${op}`, { threads: 1, connections: Math.max(1, Math.floor(CONNECTIONS / APPS)), durationS: DURATION_S })))
    figures.set(op, {
      rps: runs.reduce((n, r) => n + r.rps, 0),
      p50Ms: Math.max(...runs.map((r) => r.p50Ms)),
      p99Ms: Math.max(...runs.map((r) => r.p99Ms)),
      errors: runs.map((r) => r.errors).filter(Boolean).join('; '),
    })
  }
  const after = await Promise.all(seeds.map(served))
  return { figures, perSeed: after.map((a, i) => a - before[i]!) }
}

requireTools('wrk')
guard(20 * 60_000)
const loadBefore = loadAverage()
console.log(`${APPS} app nodes (1 child, 2 threads each), wrk -t1 -c${Math.floor(CONNECTIONS / APPS)} -d${DURATION_S}s on each at once, ${KEYS} keys; load average before: ${loadBefore}`)
const teardowns: (() => void)[] = []
process.once('exit', () => teardowns.forEach((fn) => fn()))
const postgres = await startPostgres({ teardown: (fn: () => void) => void teardowns.push(fn) } as never)

const rows: string[] = []
for (const [name, seeds] of [
  ['embedded, 1 seed', async () => [await startSeed({ 'node-id': 'seed-a' })]],
  ['PostgreSQL, 1 seed', async () => startPostgresSeeds(await postgres.createDatabase('one'), 1)],
  [`PostgreSQL, ${SEEDS} seeds`, async () => startPostgresSeeds(await postgres.createDatabase('several'), SEEDS)],
] as const) {
  const { figures, perSeed } = await runSetup(await seeds())
  for (const op of OPS) {
    const f = figures.get(op)!
    const row = `| ${name} | tables.${op} | ${Math.round(f.rps).toLocaleString('en-US')} | ${f.p50Ms.toFixed(2)} | ${f.p99Ms.toFixed(2)} | ${f.errors || 'none'} |`
    rows.push(row)
    console.log(row)
  }
  console.log(`  ${name}: ds ops served per seed ${perSeed.map((n, i) => `seed-${String.fromCharCode(97 + i)} ${n.toLocaleString('en-US')}`).join(', ')}`)
  killAll()
  await sleep(500)
}
console.log('\n| setup | op | requests/s (all app nodes) | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|')
for (const row of rows) console.log(row)
console.log(`\nload average before: ${loadBefore}; after: ${loadAverage()}`)
process.exit(0)
