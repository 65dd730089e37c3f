/**
 * Datastore bench (issue #15): the datastore ops (put, get, list, putIf,
 * delete, consume) through nodes' datastore clients (lib/storage/datastore-client.ts
 * over lib/process/seed-link.ts, as app, fileserver and mail nodes use them),
 * against three setups in turn: one embedded seed, one seed on PostgreSQL,
 * and N seeds on one PostgreSQL (each node's `ds.*` then rides the link to
 * the seed its node id picks, so the ops spread over the seeds). Seeds are
 * real processes from dist; PostgreSQL is a real server started here
 * (tests/helpers/postgres.ts); the simulated nodes run in this process.
 *
 * Each op runs for `--duration` seconds with `--concurrency` requests in
 * flight (split over `--nodes` nodes), one op after another: put writes
 * fresh keys (a 100-byte value), get and list read them, putIf updates them
 * (match on the version it wrote last), delete removes half and consume the
 * other half (those stop early when the keys run out). Printed per setup
 * and op: ops/s, p50 and p99 (ms, as the node sees them), failures; per
 * setup how many ops each seed served and their mean time in the seed's
 * store (its espra_seed_datastore_op_duration_seconds: the rest of a round
 * trip is the meta link, queueing and this process); the load average
 * before and after. Needs `npm run build` and Debian's `postgresql`.
 *
 *   npm run build && npx tsx bench/datastore.ts [--duration 5] [--concurrency 64] [--nodes 8] [--seeds 3]
 */
import { loadavg } from 'node:os'
import { loadConfig } from '../lib/core/config.js'
import { createLogger } from '../lib/core/log.js'
import type { NodeState } from '../lib/core/node-state.js'
import type { Role } from '../lib/process/role.js'
import { createSeedLink, type SeedLink } from '../lib/process/seed-link.js'
import { createDatastoreClient } from '../lib/storage/datastore-client.js'
import type { Datastore } from '../lib/storage/datastore.js'
import { startPostgres } from '../tests/helpers/postgres.js'
import { arg, sleep } from './args.js'
import { BENCH_SECRET, guard, killAll } from './live-common.js'
import { startPostgresSeeds, startSeed, type BenchSeed } from './nodes.js'

if (process.argv.includes('--help')) {
  console.log('npm run build && npx tsx bench/datastore.ts [--duration 5] [--concurrency 64] [--nodes 8] [--seeds 3]\n' +
    '  put, get, list, putIf, delete, consume through the datastore clients of --nodes simulated nodes (in this process),\n' +
    '  --concurrency requests in flight, --duration seconds per op, against: one embedded seed, one seed on PostgreSQL,\n' +
    '  --seeds seeds on one PostgreSQL (ops spread by node id). Prints ops/s, p50/p99 ms and failures per op,\n' +
    '  ops served per seed, and the load average before and after. Needs Debian\'s postgresql.')
  process.exit(0)
}

const DURATION_S = arg('duration', 5)
const CONCURRENCY = arg('concurrency', 64)
const NODES = arg('nodes', 8)
const SEEDS = arg('seeds', 3)
const OPS = ['put', 'get', 'list', 'putIf', 'delete', 'consume'] as const
type Op = (typeof OPS)[number]
const PAD = 'x'.repeat(100)

const log = createLogger('silent', { role: 'bench', node: 'bench' })
const load = () => loadavg().map((l) => l.toFixed(1)).join(' ')

interface OpResult {
  readonly ops: number
  readonly failed: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly firstError: string | null
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** A simulated node: the seed link and datastore client a real node builds, under a node id of its own. */
function node(id: string, seeds: readonly string[]): { link: SeedLink; ds: Datastore } {
  const config = loadConfig({ flags: { role: 'proxy', nodeId: id, seed: seeds.join(','), bind: '127.0.0.1', advertise: '127.0.0.1' }, env: { ESPRA_SECRET: BENCH_SECRET } })
  const state: NodeState = { draining: false, childrenAlive: 0, childrenWanted: 0, seedConnected: false, build: null, crashLooping: [], routing: null }
  // A role that subscribes to nothing: the link only registers, heartbeats and carries requests.
  const role = { name: 'proxy' } as unknown as Role
  const link = createSeedLink({
    config, role, log, startedAt: Date.now(), state: () => state,
    load: () => ({ connections: 0, rps: 0, rssBytes: 0, lagMs: 0 }), onPush: () => {}, onChange: () => {},
  })
  return { link, ds: createDatastoreClient(link) }
}

/** ds.* ops each seed served so far and the seconds they took in it (its store), from its /metrics. */
async function served(seed: BenchSeed): Promise<{ count: number; seconds: number }> {
  const text = await (await fetch(`http://127.0.0.1:${seed.node.port + 1000}/metrics`)).text()
  let count = 0
  let seconds = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('espra_seed_datastore_op_duration_seconds_count')) count += Number(line.split(' ').at(-1))
    if (line.startsWith('espra_seed_datastore_op_duration_seconds_sum')) seconds += Number(line.split(' ').at(-1))
  }
  return { count, seconds }
}

/** Runs every op in turn over `nodes`; per worker its own keys, so putIf knows the version it wrote. */
async function measure(nodes: { ds: Datastore }[], label: string): Promise<Map<Op, OpResult>> {
  const perNode = Math.max(1, Math.floor(CONCURRENCY / nodes.length))
  const workers = nodes.flatMap((n, ni) => Array.from({ length: perNode }, (_, wi) => ({ ds: n.ds, prefix: `bench/${label}/${ni}-${wi}/`, keys: [] as string[], version: new Map<string, number>() })))
  const results = new Map<Op, OpResult>()
  for (const op of OPS) {
    const latencies: number[] = []
    let failed = 0
    let firstError: string | null = null
    const started = performance.now()
    const until = started + DURATION_S * 1000
    await Promise.all(workers.map(async (w) => {
      let i = 0
      // delete takes the even-numbered keys, consume the odd ones.
      const mine = op === 'delete' ? w.keys.filter((_, k) => k % 2 === 0) : op === 'consume' ? w.keys.filter((_, k) => k % 2 === 1) : w.keys
      while (performance.now() < until) {
        if ((op === 'delete' || op === 'consume') && i >= mine.length) break
        if (op !== 'put' && w.keys.length === 0) break
        const key = op === 'put' ? `${w.prefix}${String(w.keys.length).padStart(8, '0')}` : mine[op === 'delete' || op === 'consume' ? i : (i * 7919) % mine.length]!
        const t0 = performance.now()
        try {
          if (op === 'put') {
            await w.ds.put('cluster', key, { v: 0, pad: PAD })
            w.keys.push(key)
            w.version.set(key, 0)
          } else if (op === 'get') {
            if ((await w.ds.get('cluster', key)) === null) throw new Error('get: a key written in the put phase is missing')
          } else if (op === 'list') {
            await w.ds.list('cluster', { prefix: w.prefix, after: key, limit: 20 })
          } else if (op === 'putIf') {
            const v = w.version.get(key)!
            if (!(await w.ds.putIf('cluster', key, { v: v + 1, pad: PAD }, { v }))) throw new Error('putIf: not written though this worker wrote the last version')
            w.version.set(key, v + 1)
          } else if (op === 'delete') {
            if (!(await w.ds.delete('cluster', key))) throw new Error('delete: nothing deleted')
          } else if ((await w.ds.consume('cluster', key)) === null) throw new Error('consume: nothing consumed')
          latencies.push(performance.now() - t0)
        } catch (err) {
          failed++
          firstError ??= (err as Error).message
        }
        i++
      }
    }))
    const seconds = (performance.now() - started) / 1000
    latencies.sort((a, b) => a - b)
    results.set(op, { ops: latencies.length, failed, perSecond: latencies.length / seconds, p50: pct(latencies, 50), p99: pct(latencies, 99), firstError })
  }
  return results
}

/** Starts `nodes` simulated nodes listing `seeds` and waits until each one's datastore ops reach a seed. */
async function startNodes(seeds: readonly string[], label: string): Promise<{ link: SeedLink; ds: Datastore }[]> {
  const nodes = Array.from({ length: NODES }, (_, i) => node(`bench-${label}-${i}`, seeds))
  for (const n of nodes) {
    for (let tries = 0; ; tries++) {
      try {
        await n.ds.put('cluster', `bench/${label}/warm`, { v: 0 })
        break
      } catch (err) {
        if (tries > 100) throw err
        await sleep(100)
      }
    }
  }
  // The datastore link connects after the main one: give it a moment, as the spread test does by counting.
  await sleep(1000)
  return nodes
}

interface Setup {
  readonly name: string
  readonly seeds: BenchSeed[]
}

async function runSetup(setup: Setup): Promise<{ results: Map<Op, OpResult>; perSeed: number[]; inStoreMs: number }> {
  const addresses = setup.seeds.map((s) => s.address)
  const nodes = await startNodes(addresses, setup.name.replace(/\W+/g, '-'))
  const before = await Promise.all(setup.seeds.map(served))
  const results = await measure(nodes, setup.name.replace(/\W+/g, '-'))
  const after = await Promise.all(setup.seeds.map(served))
  await Promise.all(nodes.map(async (n) => {
    await n.ds.close()
    await n.link.close()
  }))
  const perSeed = after.map((a, i) => a.count - before[i]!.count)
  const seconds = after.reduce((n, a, i) => n + a.seconds - before[i]!.seconds, 0)
  return { results, perSeed, inStoreMs: (seconds * 1000) / Math.max(1, perSeed.reduce((a, b) => a + b, 0)) }
}

guard(20 * 60_000)
const loadBefore = load()
console.log(`load average before: ${loadBefore}`)
const teardowns: (() => void)[] = []
process.once('exit', () => teardowns.forEach((fn) => fn()))
const postgres = await startPostgres({ teardown: (fn: () => void) => void teardowns.push(fn) } as never)

const table: string[] = []
const spread: string[] = []
for (const [name, seeds] of [
  ['embedded, 1 seed', async () => [await startSeed({ 'node-id': 'seed-a' })]],
  ['PostgreSQL, 1 seed', async () => startPostgresSeeds(await postgres.createDatabase('one'), 1)],
  [`PostgreSQL, ${SEEDS} seeds`, async () => startPostgresSeeds(await postgres.createDatabase('several'), SEEDS)],
] as const) {
  const setup: Setup = { name, seeds: await seeds() }
  const { results, perSeed, inStoreMs } = await runSetup(setup)
  for (const op of OPS) {
    const r = results.get(op)!
    const row = `| ${name} | ${op} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.failed}${r.firstError ? ` (${r.firstError})` : ''} |`
    table.push(row)
    console.log(row)
  }
  const total = [...results.values()].reduce((n, r) => n + r.ops + r.failed, 0)
  spread.push(`${name}: ${total.toLocaleString('en-US')} ops sent; served per seed ${perSeed.map((n, i) => `seed-${String.fromCharCode(97 + i)} ${n.toLocaleString('en-US')}`).join(', ')}; mean time in the seeds' store ${inStoreMs.toFixed(2)} ms per op`)
  killAll()
  await sleep(500)
}
console.log(`\n${NODES} nodes, ${CONCURRENCY} requests in flight, ${DURATION_S} s per op\n`)
console.log('| setup | op | ops/s | p50 ms | p99 ms | failed |\n|---|---|---|---|---|---|')
for (const row of table) console.log(row)
for (const line of spread) console.log(line)
console.log(`\nload average before: ${loadBefore}; after: ${load()}`)
process.exit(0)
