/**
 * Seed scale bench: a real seed in its own process, N simulated nodes (real
 * TCP meta clients in separate load processes) registering and heartbeating
 * at 1 Hz, ~5% of them Live nodes in one region watched by a few proxy
 * subscribers. After a steady-state window, 1% of the nodes die (half go
 * silent with their socket open, half close it); the bench reports seed CPU
 * and RSS, detection time and routing propagation time. Loopback only; it
 * stops by itself.
 *
 *   npx tsx bench/seed-scale.ts [--nodes 2000] [--loaders 2] [--steady 10] [--proxies 4]
 */
import { arg, helpFrom, sleep } from './args.js'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createLogger } from '../lib/core/log.js'
import { createMetaClient, type MetaClient } from '../lib/transport/meta-client.js'
import type { NodeEvent, RoutingTable } from '../lib/transport/meta-shapes.js'
import { BENCH_REGION, BENCH_SECRET, type FromLoad, type SimNode, type ToLoad } from './seed-scale-workers.js'

helpFrom(import.meta.url)

const WORKERS = new URL('./seed-scale-workers.ts', import.meta.url).pathname
const HARD_LIMIT_MS = 180_000
const CLK_TCK = 100 // Linux USER_HZ


const N = arg('nodes', 2000)
const LOADERS = arg('loaders', 2)
const STEADY_S = arg('steady', 10)
const PROXIES = arg('proxies', 4)

/** utime + stime of a process in seconds, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const children: ChildProcess[] = []
const clients: MetaClient[] = []

function stopAll(): void {
  for (const c of clients) c.destroy()
  for (const child of children) child.kill('SIGKILL')
}

async function main(): Promise<void> {
  const hard = setTimeout(() => {
    console.error(`bench exceeded ${HARD_LIMIT_MS / 1000} s; stopping`)
    stopAll()
    process.exit(2)
  }, HARD_LIMIT_MS)

  const seed = fork(WORKERS, ['seed'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(seed)
  const [{ port }] = (await once(seed, 'message')) as [{ port: number }]
  console.log(`seed pid ${seed.pid} on 127.0.0.1:${port}; ${N} nodes in ${LOADERS} load processes, ${PROXIES} proxies`)

  // Observers in this process: one events subscriber and the proxies.
  const log = createLogger('silent', { role: 'bench', node: 'observer' })
  const detected = new Map<string, { at: number; type: string }>()
  const tablesSeen: { proxy: number; receivedAt: number; ids: Set<string> }[] = []
  const base = { seeds: [`127.0.0.1:${port}`], secret: BENCH_SECRET, peer: { kind: 'admin' as const }, maxFrame: 1024 * 1024, log, reconnect: false }
  const watcher = createMetaClient({
    ...base,
    onConnect: async (link) => void (await link.request('subscribe', { events: true })),
    onPush: (op, body) => {
      const e = body as NodeEvent
      if (op === 'event' && (e.type === 'left' || e.node.health === 'suspect') && !detected.has(e.node.id)) detected.set(e.node.id, { at: e.at, type: e.type })
    },
  })
  clients.push(watcher)
  for (let p = 0; p < PROXIES; p++) {
    const proxy = createMetaClient({
      ...base,
      onConnect: async (link) => void (await link.request('subscribe', { routing: BENCH_REGION })),
      onPush: (op, body) => {
        if (op === 'routing') tablesSeen.push({ proxy: p, receivedAt: Date.now(), ids: new Set((body as RoutingTable).nodes.map((n) => n.id)) })
      },
    })
    clients.push(proxy)
  }
  await Promise.all(clients.map((c) => c.ready))

  const nodes: SimNode[] = [...Array(N).keys()].map((i) => ({ id: `sim-${String(i).padStart(5, '0')}`, live: i % 20 === 0, port: 20_000 + i }))
  const loaders = [...Array(LOADERS).keys()].map(() => fork(WORKERS, ['load'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  children.push(...loaders)
  const owner = new Map<string, ChildProcess>()
  const rampCpu0 = cpuSeconds(seed.pid!)
  const rampStart = Date.now()
  const ready = loaders.map((loader, li) => {
    const slice = nodes.filter((_, i) => i % LOADERS === li)
    for (const n of slice) owner.set(n.id, loader)
    loader.send({ type: 'start', seedPort: port, nodes: slice, concurrency: Math.floor(100 / LOADERS) } satisfies ToLoad)
    return once(loader, 'message') as Promise<[FromLoad]>
  })
  const reports = (await Promise.all(ready)).map(([r]) => r as Extract<FromLoad, { type: 'ready' }>)
  const rampMs = Date.now() - rampStart
  const rampCpu = cpuSeconds(seed.pid!) - rampCpu0
  const registered = reports.reduce((s, r) => s + r.registered, 0)
  const failed = reports.reduce((s, r) => s + r.failed, 0)
  console.log(`registered ${registered}/${N} in ${rampMs} ms (seed CPU ${((100 * rampCpu) / (rampMs / 1000)).toFixed(1)}% of a core during the ramp)${failed ? `; ${failed} failed: ${reports.flatMap((r) => r.errors).join(' | ')}` : ''}`)

  await sleep(2000) // let heartbeats settle into their 1 Hz spread
  const cpu0 = cpuSeconds(seed.pid!)
  const loadCpu0 = loaders.map((l) => cpuSeconds(l.pid!))
  const t0 = Date.now()
  await sleep(STEADY_S * 1000)
  const wallS = (Date.now() - t0) / 1000
  const seedCpuPct = (100 * (cpuSeconds(seed.pid!) - cpu0)) / wallS
  const loadCpuPct = loaders.map((l, i) => (100 * (cpuSeconds(l.pid!) - loadCpu0[i]!)) / wallS)
  const seedRss = rssMb(seed.pid!)
  seed.send({ type: 'stats' })
  const [stats] = (await once(seed, 'message')) as [{ nodes: number }]

  // A healthy steady state evicts nobody: anything detected so far is a false positive.
  const falseDeaths = detected.size
  detected.clear()
  tablesSeen.length = 0

  // Kill 1%: half of them Live nodes so routing changes; half silent, half closed.
  const kills = Math.max(2, Math.round(N / 100))
  const liveIds = nodes.filter((n) => n.live).map((n) => n.id)
  const otherIds = nodes.filter((n) => !n.live).map((n) => n.id)
  const victims = [...liveIds.filter((_, i) => i % 7 === 3).slice(0, Math.ceil(kills / 2)), ...otherIds.filter((_, i) => i % 37 === 5).slice(0, Math.floor(kills / 2))]
  const silent = new Set(victims.filter((_, i) => i % 2 === 0))
  const killedAt = Date.now()
  const deathReports = loaders.map((loader) => {
    const mine = victims.filter((id) => owner.get(id) === loader)
    loader.send({ type: 'kill', silent: mine.filter((id) => silent.has(id)), destroy: mine.filter((id) => !silent.has(id)) } satisfies ToLoad)
    return once(loader, 'message') as Promise<[FromLoad]>
  })
  const deaths = (await Promise.all(deathReports)).flatMap(([r]) => (r as Extract<FromLoad, { type: 'killed' }>).deaths)
  const deadline = killedAt + 3000 + 5000
  const victimLive = new Set(victims.filter((id) => liveIds.includes(id)))
  const propagated = (id: string) => {
    const d = detected.get(id)
    if (!d) return null
    const times: number[] = []
    for (let p = 0; p < PROXIES; p++) {
      const first = tablesSeen.find((s) => s.proxy === p && !s.ids.has(id) && s.receivedAt >= d.at)
      if (!first) return null
      times.push(first.receivedAt - d.at)
    }
    return Math.max(...times)
  }
  while (Date.now() < deadline && (victims.some((id) => !detected.has(id)) || [...victimLive].some((id) => propagated(id) === null))) await sleep(50)

  const detection = (mode: 'silent' | 'destroy') =>
    deaths.filter((d) => d.mode === mode && detected.has(d.id)).map((d) => detected.get(d.id)!.at - d.lastHeartbeatAt)
  const all = [...detection('silent'), ...detection('destroy')]
  const props = [...victimLive].map(propagated).filter((v): v is number => v !== null)
  const missing = victims.filter((id) => !detected.has(id))
  const ms = (v: number) => (Number.isNaN(v) ? 'n/a' : `${Math.round(v)} ms`)
  const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED')

  console.log('')
  console.log(`steady state: ${stats.nodes}/${registered} nodes registered at the seed, ${falseDeaths} falsely detected as dead, ${STEADY_S} s window   ${verdict(falseDeaths === 0 && stats.nodes === registered)}`)
  console.log(`  seed CPU           ${seedCpuPct.toFixed(1)}% of one core        target <= 25%   ${verdict(seedCpuPct <= 25)}`)
  console.log(`  seed RSS           ${seedRss.toFixed(0)} MB`)
  console.log(`  load processes CPU ${loadCpuPct.map((c) => `${c.toFixed(0)}%`).join(', ')} (they share the machine)`)
  console.log(`deaths: ${victims.length} (${silent.size} silent with socket open, ${victims.length - silent.size} closed; ${victimLive.size} Live)`)
  console.log(`  detection p50/p99  ${ms(pct(all, 50))} / ${ms(pct(all, 99))}   target p99 <= 3500 ms (3 s timeout)   ${verdict(missing.length === 0 && pct(all, 99) <= 3500)}`)
  console.log(`    silent           ${ms(pct(detection('silent'), 50))} / ${ms(pct(detection('silent'), 99))} (heartbeat timeout → left)`)
  console.log(`    closed           ${ms(pct(detection('destroy'), 50))} / ${ms(pct(detection('destroy'), 99))} (connection close → suspect)`)
  console.log(`  propagation p50/p99 ${ms(pct(props, 50))} / ${ms(pct(props, 99))} to all ${PROXIES} proxies (${props.length}/${victimLive.size} measured)   target p99 <= 100 ms   ${verdict(props.length === victimLive.size && pct(props, 99) <= 100)}`)
  if (missing.length) console.log(`  NOT DETECTED: ${missing.join(', ')}`)

  clearTimeout(hard)
  stopAll()
}

main().catch((err) => {
  console.error(err)
  stopAll()
  process.exit(1)
})
