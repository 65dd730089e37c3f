/**
 * Live fan-out bench: a real seed and 2 real Live nodes (`espra-node` from
 * dist, 2 children each), N WebSocket subscribers of one channel spread over
 * both nodes (in separate load processes, bench/live-load.ts), and a
 * publisher in this process sending R messages/s over HTTP (`POST /pub`,
 * alternating between the nodes, so half the publishes cross the internal
 * link to the channel's home) with the publish time in the data. Prints
 * delivered messages/s, publish-to-receive latency p50/p99, a per subscriber
 * check by seq (nothing lost, nothing out of order or twice), and the Live
 * processes' CPU time per delivered message (utime + stime from /proc, Live
 * parents and children only, not the load processes or the publisher; from
 * the first publish until every message is delivered), split parent /
 * children. Loopback only; stops by itself and kills everything it started.
 *
 * `--runs 1000x100,5000x20` is a sweep: one cluster per `<subscribers>x<rate>`
 * pair, one after the other, and a summary table at the end (subscribers ×
 * rate, deliveries/s, p50/p99, µs of Live CPU per delivery, lost).
 * `--subscribers N --rate R` is the same as `--runs NxR` (one run).
 * `--replicas 1,2` runs each pair once per `--live-replicas` value and prints
 * the p99 of each against the first (what replication adds: each publish is
 * answered and delivered once the channel's backup, the other node, holds it).
 * `--homes node,children` runs each pair once per `--live-homes` value (what
 * homes the channels: each child as a Live peer of its own, the default, so
 * publishes and deliveries never cross the parent; or the node's parent).
 * `--floor` adds, per pair, a run against a plain uWS server in one process
 * (bench/live-fanout-floor.ts: the same frames to the same load processes,
 * no Live node around it): what the fan-out itself costs on this machine.
 * `--cpu-prof <dir>`: the Live parents and children write V8 CPU profiles of
 * the publishing window to <dir> (bench/cpu-prof-window.cjs; one per process
 * and run, `<role>-<pid>.cpuprofile`, the pids printed with each run).
 *
 *   npm run build && npx tsx bench/live-fanout.ts [--runs 1000x100,5000x20 | --subscribers 10000 --rate 100] [--seconds 20] [--loaders 2] [--children 2] [--replicas 2|1|1,2] (2: the product's default) [--homes children|node|node,children] (children: the product's default) [--floor] [--cpu-prof <dir>]
 */
import { Agent, request } from 'node:http'
import { cpus, loadavg } from 'node:os'
import { readdirSync } from 'node:fs'
import { deriveTokenKey, mintToken } from '../lib/live/token.js'
import { arg, helpFrom, sleep, textArg } from './args.js'
import { fork } from 'node:child_process'
import { adopt, BENCH_SECRET, cpuSeconds, freePorts, guard, killAll, nextMessage, pct, startEspra, startLoad } from './live-common.js'
import { BUCKET_US, type FanoutReport, type FromLoad, type ToLoad } from './live-load.js'

helpFrom(import.meta.url)

const SECONDS = arg('seconds', 20)
const LOADERS = arg('loaders', 2)
const CHILDREN = arg('children', 2)
const CH = 'bench:fanout'
const REPLICAS = (textArg('replicas') ?? '2').split(',').map((v) => {
  if (v !== '1' && v !== '2') throw new Error('--replicas must be 1, 2 or 1,2')
  return Number(v)
})
const HOMES = (textArg('homes') ?? 'children').split(',').map((v) => {
  if (v !== 'node' && v !== 'children') throw new Error('--homes must be node, children or node,children')
  return v
})
const CPU_PROF = textArg('cpu-prof')
const FLOOR = process.argv.includes('--floor')
/** Issue #17's targets, at 1,000 subscribers × 100 msgs/s. */
const TARGET_P99_MS = 20
const TARGET_US_PER_DELIVERY = 2

interface Pair {
  subscribers: number
  rate: number
}

function runsArg(): Pair[] {
  const runs = textArg('runs')
  if (runs === undefined) return [{ subscribers: arg('subscribers', 10_000), rate: arg('rate', 100) }]
  if (process.argv.includes('--subscribers') || process.argv.includes('--rate')) throw new Error('--runs names the subscribers and rates: give it or --subscribers/--rate, not both')
  return runs.split(',').map((pair) => {
    const m = /^(\d+)x(\d+(?:\.\d+)?)$/.exec(pair.trim())
    if (!m || Number(m[1]) <= 0 || Number(m[2]) <= 0) throw new Error(`--runs takes <subscribers>x<rate> pairs separated by commas (e.g. 1000x100,5000x20), not '${pair}'`)
    return { subscribers: Number(m[1]), rate: Number(m[2]) }
  })
}
const RUNS = runsArg()

interface Result extends Pair {
  /** --live-replicas, or 0 for the plain uWS floor. */
  replicas: number
  /** --live-homes, or `-` for the floor. */
  homes: string
  connected: number
  deliveredPerS: number
  p50: number
  p99: number
  lost: number
  bad: number
  /** µs of CPU per delivered message: both Live parents together, both nodes' children together. */
  parentUs: number
  childUs: number
  /** µs of both Live parents' CPU per published message. */
  parentUsPerPub: number
}

const load = () => loadavg().map((v) => v.toFixed(2)).join(' ')

async function main(): Promise<void> {
  const hard = guard((SECONDS + 150) * 1000 * (REPLICAS.length * HOMES.length + (FLOOR ? 1 : 0)) * RUNS.length)
  console.log(`load average before: ${load()}`)
  const results: Result[] = []
  for (const run of RUNS) {
    for (const homes of HOMES) {
      for (const replicas of REPLICAS) {
        console.log(`--- ${run.subscribers} subscribers × ${run.rate} msgs/s, --live-replicas ${replicas}, --live-homes ${homes}`)
        results.push(await runOnce(run, await startLive(replicas, homes)))
      }
    }
    if (FLOOR) {
      console.log(`--- ${run.subscribers} subscribers × ${run.rate} msgs/s, plain uWS (the floor: no Live node)`)
      results.push(await runOnce(run, await startFloor()))
    }
  }
  console.log('')
  console.log(`load average after: ${load()}`)
  console.log('')
  console.log('| subscribers × msgs/s | replicas | homes | deliveries/s | p50 / p99 ms | µs Live CPU per delivery (parents + children) | lost, bad |')
  console.log('|---|---|---|---|---|---|---|')
  for (const r of results) {
    console.log(`| ${r.subscribers} × ${r.rate} | ${r.replicas === 0 ? 'plain uWS' : r.replicas} | ${r.homes} | ${Math.round(r.deliveredPerS)} | ${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} | ${(r.parentUs + r.childUs).toFixed(2)} (${r.parentUs.toFixed(2)} + ${r.childUs.toFixed(2)}) | ${r.lost}, ${r.bad} |`)
  }
  for (const r of results.filter((x) => x.subscribers === 1000 && x.rate === 100 && x.replicas > 0)) {
    const us = r.parentUs + r.childUs
    console.log(`1000 × 100, replicas ${r.replicas}, homes ${r.homes}: p99 ${r.p99.toFixed(1)} ms (target <= ${TARGET_P99_MS}) ${r.p99 <= TARGET_P99_MS ? 'ok' : 'MISSED'}; ${us.toFixed(2)} µs Live CPU per delivery (target <= ${TARGET_US_PER_DELIVERY}) ${us <= TARGET_US_PER_DELIVERY ? 'ok' : 'MISSED'}`)
  }
  for (const run of RUNS) {
    const same = results.filter((r) => r.subscribers === run.subscribers && r.rate === run.rate && r.replicas > 0 && r.homes === HOMES[0])
    if (same.length < 2) continue
    // Against the run with the fewest replicas, whatever order they ran in (`--replicas 2,1` runs the replicated one first).
    const byReplicas = [...same].sort((x, y) => x.replicas - y.replicas)
    const base = byReplicas[0]!
    const added = byReplicas.at(-1)!.p99 - base.p99
    console.log(`${run.subscribers} × ${run.rate}: replication adds ${added.toFixed(1)} ms to p99 (p50 ${(byReplicas.at(-1)!.p50 - base.p50).toFixed(1)} ms)   target <= 2 ms   ${added <= 2 ? 'ok' : 'MISSED'}`)
  }
  clearTimeout(hard)
}

/** What a run measures: the ports subscribers and the publisher use, and the processes whose CPU counts. */
interface Target {
  replicas: number
  /** `--live-homes`, or `-` for the floor. */
  homes: string
  ports: number[]
  parents: { pid: number; name: string }[]
  children: { pid: number; name: string }[]
}

async function startLive(replicas: number, homes: string): Promise<Target> {
  const meta = await freePorts()
  const seedFlags = { seed: `127.0.0.1:${meta}`, 'heartbeat-interval': '500ms' }
  const seed = await startEspra('seed', await freePorts(), { ...seedFlags, 'meta-port': meta, 'seed-grace': '0' })
  const liveFlags = { ...seedFlags, children: CHILDREN, 'live-public': 'bench:*', 'live-replicas': replicas, 'live-homes': homes }
  // With --cpu-prof, only the Live processes (and their children, which inherit the environment) load the profiler.
  const nodeOptions = process.env['NODE_OPTIONS']
  if (CPU_PROF !== undefined) {
    process.env['NODE_OPTIONS'] = `${nodeOptions ?? ''} --require ${new URL('./cpu-prof-window.cjs', import.meta.url).pathname}`.trim()
    process.env['ESPRA_BENCH_CPU_PROF_WINDOW'] = CPU_PROF
  }
  const lives = [await startEspra('live', await freePorts(), { ...liveFlags, 'node-id': 'live-a' }), await startEspra('live', await freePorts(), { ...liveFlags, 'node-id': 'live-b' })]
  if (CPU_PROF !== undefined) {
    if (nodeOptions === undefined) delete process.env['NODE_OPTIONS']
    else process.env['NODE_OPTIONS'] = nodeOptions
    delete process.env['ESPRA_BENCH_CPU_PROF_WINDOW']
  }
  const applied = (l: Record<string, unknown>) => l['msg'] === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true
  for (const n of lives) {
    if (homes === 'node') await n.waitForLog(applied, 'both nodes in the routing table')
    else for (let c = 0; c < CHILDREN; c++) await n.waitForLog((l) => applied(l) && l['peers'] === 2 * CHILDREN && l['child'] === c, `child ${c}: every child of both nodes in the routing table`)
  }
  console.log(`seed pid ${seed.pid}; live-a pid ${lives[0]!.pid} :${lives[0]!.port} children ${lives[0]!.children().join(',')}; live-b pid ${lives[1]!.pid} :${lives[1]!.port} children ${lives[1]!.children().join(',')}`)
  return {
    replicas, homes, ports: lives.map((n) => n.port),
    parents: lives.map((n, k) => ({ pid: n.pid, name: `live-${'ab'[k]} parent` })),
    children: lives.flatMap((n, k) => n.children().map((pid, c) => ({ pid, name: `live-${'ab'[k]} child ${c}` }))),
  }
}

async function startFloor(): Promise<Target> {
  const port = await freePorts()
  const server = fork(new URL('./live-fanout-floor.ts', import.meta.url).pathname, [String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  adopt(server)
  await nextMessage<{ type: 'listening' }>(server, 'listening')
  console.log(`plain uWS server pid ${server.pid} :${port}`)
  // Both "nodes" are the one server: the publisher alternates between the same port.
  return { replicas: 0, homes: '-', ports: [port, port], parents: [], children: [{ pid: server.pid!, name: 'plain uWS' }] }
}

async function runOnce({ subscribers, rate }: Pair, target: Target): Promise<Result> {
  const { replicas } = target

  // Subscribers.
  const loaders = Array.from({ length: LOADERS }, () => startLoad())
  const t0 = Date.now()
  const ready = await Promise.all(
    loaders.map((l, i) => {
      const count = Math.floor(subscribers / LOADERS) + (i < subscribers % LOADERS ? 1 : 0)
      const answer = nextMessage<Extract<FromLoad, { type: 'ready' }>>(l, 'ready')
      l.send({ type: 'fanout', ports: target.ports, count, ch: CH, concurrency: 100 } satisfies ToLoad)
      return answer
    }),
  )
  const connected = ready.reduce((s, r) => s + r.connected, 0)
  const seqs = new Set(ready.flatMap((r) => r.subOkSeqs))
  console.log(`${connected}/${subscribers} subscribers of ${CH} in ${LOADERS} load processes, ${Date.now() - t0} ms; sub-ok seq ${[...seqs].join(', ')}${ready.some((r) => r.failed) ? `; failed: ${ready.flatMap((r) => r.errors).join(' | ')}` : ''}`)
  if (seqs.size !== 1) throw new Error('subscribers disagree on the starting seq: the channel is not quiet')
  await sleep(1000)

  // Publisher: R messages/s, over keep-alive HTTP, alternating nodes; `t` is µs since the epoch.
  const tok = mintToken(deriveTokenKey(BENCH_SECRET), { pub: [CH], ttlMs: 3_600_000 })
  const agent = new Agent({ keepAlive: true, maxSockets: 8 })
  let sent = 0
  let acked = 0
  let pubErrors = 0
  let maxAckMs = 0
  const publish = (i: number): void => {
    const port = target.ports[i % 2]!
    const startedAt = performance.now()
    const body = JSON.stringify({ i, t: Math.round((performance.timeOrigin + performance.now()) * 1000) })
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: `/pub/${CH}`, agent, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => {
        if (res.statusCode === 200) acked++
        else pubErrors++
        maxAckMs = Math.max(maxAckMs, performance.now() - startedAt)
      })
    })
    req.on('error', () => pubErrors++)
    req.end(body)
  }
  const live = [...target.parents, ...target.children]
  const livePids = live.map((p) => p.pid)
  const others = [...loaders.map((l) => l.pid!), process.pid]
  const procs = [...livePids, ...others]
  const profile = (): void => {
    if (CPU_PROF !== undefined && replicas > 0) for (const pid of livePids) process.kill(pid, 'SIGUSR2')
  }
  profile()
  const cpu0 = procs.map(cpuSeconds)
  const pubStart = performance.now()
  const total = Math.round(rate * SECONDS)
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - pubStart) / 1000) * rate) + 1)
      while (sent < due) publish(sent++)
      if (sent >= total) {
        clearInterval(tick)
        resolve()
      }
    }, 2)
  })
  const pubWall = (performance.now() - pubStart) / 1000
  const cpuPub = procs.map((p, i) => (100 * (cpuSeconds(p) - cpu0[i]!)) / pubWall)

  // Drain: wait until every subscriber has every message, or 15 s.
  const report = async (): Promise<FanoutReport[]> =>
    Promise.all(loaders.map((l) => {
      const r = nextMessage<FanoutReport>(l, 'report')
      l.send({ type: 'report' } satisfies ToLoad)
      return r
    }))
  let reports = await report()
  const deadline = Date.now() + 15_000
  while ((acked + pubErrors < total || reports.reduce((s, r) => s + r.received, 0) < connected * acked) && Date.now() < deadline) {
    await sleep(50)
    reports = await report()
  }
  // The Live processes' CPU from the first publish until the last delivery (or the drain's deadline).
  const cpuAll = procs.map((p, i) => cpuSeconds(p) - cpu0[i]!)
  profile()
  agent.destroy()

  const received = reports.reduce((s, r) => s + r.received, 0)
  const hist = new Map<number, number>()
  for (const r of reports) for (const [b, n] of r.hist) hist.set(b, (hist.get(b) ?? 0) + n)
  const bucketMs = BUCKET_US / 1000
  const firstUs = Math.min(...reports.map((r) => r.firstAtUs).filter((v) => v > 0))
  const lastUs = Math.max(...reports.map((r) => r.lastAtUs))
  const deliverS = (lastUs - firstUs) / 1e6
  const outOfOrder = reports.reduce((s, r) => s + r.outOfOrder, 0)
  const gaps = reports.reduce((s, r) => s + r.gaps, 0)
  const closed = reports.reduce((s, r) => s + r.closed, 0)
  const counts = new Map<number, number>()
  for (const r of reports) for (const [c, n] of r.counts) counts.set(c, (counts.get(c) ?? 0) + n)
  const short = [...counts].filter(([c]) => c < acked).reduce((s, [, n]) => s + n, 0)
  const lost = connected * acked - received
  const p50 = pct(hist, received, 50, bucketMs)
  const p99 = pct(hist, received, 99, bucketMs)
  const p999 = pct(hist, received, 99.9, bucketMs)
  const max = pct(hist, received, 100, bucketMs)
  const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED')
  const names = [...live.map((p) => p.name), ...loaders.map((_, i) => `load ${i}`), 'bench (publisher)']
  const isParent = new Set(target.parents.map((p) => p.pid))
  const sumOf = (pred: (pid: number) => boolean) => procs.reduce((s, p, i) => s + (i < livePids.length && pred(p) ? cpuAll[i]! : 0), 0)
  const parentS = sumOf((p) => isParent.has(p))
  const childS = sumOf((p) => !isParent.has(p))
  const perDelivery = (s: number) => (received > 0 ? (s * 1e6) / received : NaN)
  const targeted = subscribers === 1000 && rate === 100 && replicas > 0

  console.log('')
  console.log(`published ${acked}/${total} (${pubErrors} errors) at ${(acked / pubWall).toFixed(1)}/s over ${pubWall.toFixed(1)} s; slowest publish answer ${maxAckMs.toFixed(1)} ms`)
  console.log(`delivered ${received} of ${connected * acked} (${connected} subscribers × ${acked}) = ${Math.round(received / deliverS)} messages/s over ${deliverS.toFixed(1)} s`)
  console.log(`  latency p50 / p99 / p99.9 / max   ${p50.toFixed(1)} / ${p99.toFixed(1)} / ${p999.toFixed(1)} / ${max.toFixed(1)} ms${targeted ? `   target p99 <= ${TARGET_P99_MS} ms   ${verdict(p99 <= TARGET_P99_MS)}` : ''}`)
  console.log(`  lost ${lost}, out of order or twice ${outOfOrder} (seqs skipped ${gaps}), subscribers short of messages ${short}, connections closed ${closed}   target 0   ${verdict(lost === 0 && outOfOrder === 0 && closed === 0)}`)
  if (replicas === 0) console.log(`  server CPU per delivery ${perDelivery(childS).toFixed(2)} µs`)
  else console.log(`  Live CPU per delivery ${perDelivery(parentS + childS).toFixed(2)} µs: parents ${perDelivery(parentS).toFixed(2)} µs (${((parentS * 1e6) / Math.max(1, acked)).toFixed(0)} µs per publish), children ${perDelivery(childS).toFixed(2)} µs${targeted ? `   target <= ${TARGET_US_PER_DELIVERY} µs   ${verdict(perDelivery(parentS + childS) <= TARGET_US_PER_DELIVERY)}` : ''}`)
  console.log(`  CPU during publishing (% of one core; the machine has ${cpus().length} cores):`)
  console.log(`    ${names.map((n, i) => `${n} ${cpuPub[i]!.toFixed(0)}%`).join(', ')}`)
  if (CPU_PROF !== undefined && replicas > 0) {
    // The second SIGUSR2 makes each process write its profile: wait for them (a busy process takes a moment).
    const want = livePids.map((p) => `-${p}.cpuprofile`)
    for (let i = 0; i < 50 && !want.every((w) => readdirSync(CPU_PROF).some((f) => f.endsWith(w))); i++) await sleep(100)
    console.log(`  CPU profiles of the publishing window in ${CPU_PROF}: ${livePids.map((p, i) => `${names[i]} ${p}`).join(', ')}`)
  }
  for (const l of loaders) l.send({ type: 'close' } satisfies ToLoad)
  await sleep(200)
  killAll()
  return {
    subscribers, rate, replicas, homes: target.homes, connected, deliveredPerS: received / deliverS, p50, p99, lost, bad: outOfOrder + closed,
    parentUs: perDelivery(parentS), childUs: perDelivery(childS), parentUsPerPub: (parentS * 1e6) / Math.max(1, acked),
  }
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exit(1)
})
