/**
 * Live fan-out bench: a real seed and 2 real Live nodes (`espra-node` from
 * dist, 2 children each), N WebSocket subscribers of one channel spread over
 * both nodes (in separate load processes, bench/live-load.ts), and a
 * publisher in this process sending R messages/s over HTTP (`POST /pub`,
 * alternating between the nodes, so half the publishes cross the internal
 * link to the channel's home) with the publish time in the data. Prints
 * delivered messages/s, publish-to-receive latency p50/p99, and a per
 * subscriber check by seq: nothing lost, nothing out of order or twice.
 * Loopback only; stops by itself and kills everything it started.
 * `--replicas 1,2` runs it once per `--live-replicas` value, one cluster
 * after the other, and prints the p99 of each against the first (what
 * replication adds: each publish is answered and delivered once the
 * channel's backup, the other node, holds it).
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/live-fanout.ts [--subscribers 10000] [--rate 100] [--seconds 20] [--loaders 2] [--children 2] [--replicas 2|1|1,2] (2: the product's default)
 */
import { Agent, request } from 'node:http'
import { deriveTokenKey, mintToken } from '../lib/live/token.js'
import { arg, helpFrom, sleep, textArg } from './args.js'
import { BENCH_SECRET, cpuSeconds, freePorts, guard, killAll, nextMessage, pct, startEspra, startLoad } from './live-common.js'
import { BUCKET_US, type FanoutReport, type FromLoad, type ToLoad } from './live-load.js'

helpFrom(import.meta.url)

const SUBSCRIBERS = arg('subscribers', 10_000)
const RATE = arg('rate', 100)
const SECONDS = arg('seconds', 20)
const LOADERS = arg('loaders', 2)
const CHILDREN = arg('children', 2)
const CH = 'bench:fanout'
const REPLICAS = (textArg('replicas') ?? '2').split(',').map((v) => {
  if (v !== '1' && v !== '2') throw new Error('--replicas must be 1, 2 or 1,2')
  return Number(v)
})

async function main(): Promise<void> {
  const hard = guard((SECONDS + 150) * 1000 * REPLICAS.length)
  const results: { replicas: number; p50: number; p99: number; lost: number }[] = []
  for (const replicas of REPLICAS) {
    console.log(`--- --live-replicas ${replicas}`)
    results.push({ replicas, ...(await runOnce(replicas)) })
  }
  if (results.length > 1) {
    // Against the run with the fewest replicas, whatever order they ran in (`--replicas 2,1` runs the replicated one first).
    const byReplicas = [...results].sort((x, y) => x.replicas - y.replicas)
    const base = byReplicas[0]!
    console.log('')
    for (const r of results) console.log(`replicas ${r.replicas}: p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms (${r.p99 >= base.p99 ? '+' : ''}${(r.p99 - base.p99).toFixed(1)} ms against replicas ${base.replicas}), lost ${r.lost}`)
    const added = byReplicas.at(-1)!.p99 - base.p99
    console.log(`replication adds ${added.toFixed(1)} ms to p99   target <= 2 ms   ${added <= 2 ? 'ok' : 'MISSED'}`)
  }
  clearTimeout(hard)
}

async function runOnce(replicas: number): Promise<{ p50: number; p99: number; lost: number }> {
  const meta = await freePorts()
  const seedFlags = { seed: `127.0.0.1:${meta}`, 'heartbeat-interval': '500ms' }
  const seed = await startEspra('seed', await freePorts(), { ...seedFlags, 'meta-port': meta, 'seed-grace': '0' })
  const liveFlags = { ...seedFlags, children: CHILDREN, 'live-public': 'bench:*', 'live-replicas': replicas }
  const lives = [await startEspra('live', await freePorts(), { ...liveFlags, 'node-id': 'live-a' }), await startEspra('live', await freePorts(), { ...liveFlags, 'node-id': 'live-b' })]
  for (const n of lives) await n.waitForLog((l) => l['msg'] === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true, 'both nodes in the routing table')
  console.log(`seed pid ${seed.pid}; live-a pid ${lives[0]!.pid} :${lives[0]!.port} children ${lives[0]!.children().join(',')}; live-b pid ${lives[1]!.pid} :${lives[1]!.port} children ${lives[1]!.children().join(',')}`)

  // Subscribers.
  const loaders = Array.from({ length: LOADERS }, () => startLoad())
  const t0 = Date.now()
  const ready = await Promise.all(
    loaders.map((l, i) => {
      const count = Math.floor(SUBSCRIBERS / LOADERS) + (i < SUBSCRIBERS % LOADERS ? 1 : 0)
      const answer = nextMessage<Extract<FromLoad, { type: 'ready' }>>(l, 'ready')
      l.send({ type: 'fanout', ports: lives.map((n) => n.port), count, ch: CH, concurrency: 100 } satisfies ToLoad)
      return answer
    }),
  )
  const connected = ready.reduce((s, r) => s + r.connected, 0)
  const seqs = new Set(ready.flatMap((r) => r.subOkSeqs))
  console.log(`${connected}/${SUBSCRIBERS} subscribers of ${CH} in ${LOADERS} load processes, ${Date.now() - t0} ms; sub-ok seq ${[...seqs].join(', ')}${ready.some((r) => r.failed) ? `; failed: ${ready.flatMap((r) => r.errors).join(' | ')}` : ''}`)
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
    const node = lives[i % 2]!
    const startedAt = performance.now()
    const body = JSON.stringify({ i, t: Math.round((performance.timeOrigin + performance.now()) * 1000) })
    const req = request({ host: '127.0.0.1', port: node.port, method: 'POST', path: `/pub/${CH}`, agent, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
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
  const procs = [...lives.flatMap((n) => [n.pid, ...n.children()]), ...loaders.map((l) => l.pid!), process.pid]
  const cpu0 = procs.map(cpuSeconds)
  const pubStart = performance.now()
  const total = Math.round(RATE * SECONDS)
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - pubStart) / 1000) * RATE) + 1)
      while (sent < due) publish(sent++)
      if (sent >= total) {
        clearInterval(tick)
        resolve()
      }
    }, 2)
  })
  const pubWall = (performance.now() - pubStart) / 1000
  const cpu = procs.map((p, i) => (100 * (cpuSeconds(p) - cpu0[i]!)) / pubWall)

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
    await sleep(250)
    reports = await report()
  }
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
  const names = [...lives.flatMap((n, k) => [`live-${'ab'[k]} parent`, ...n.children().map((_, c) => `live-${'ab'[k]} child ${c}`)]), ...loaders.map((_, i) => `load ${i}`), 'bench (publisher)']

  console.log('')
  console.log(`published ${acked}/${total} (${pubErrors} errors) at ${(acked / pubWall).toFixed(1)}/s over ${pubWall.toFixed(1)} s; slowest publish answer ${maxAckMs.toFixed(1)} ms`)
  console.log(`delivered ${received} of ${connected * acked} (${connected} subscribers × ${acked}) = ${Math.round(received / deliverS)} messages/s over ${deliverS.toFixed(1)} s`)
  console.log(`  latency p50 / p99 / p99.9 / max   ${p50.toFixed(1)} / ${p99.toFixed(1)} / ${p999.toFixed(1)} / ${max.toFixed(1)} ms   target p99 <= 50 ms   ${verdict(p99 <= 50)}`)
  console.log(`  lost ${lost}, out of order or twice ${outOfOrder} (seqs skipped ${gaps}), subscribers short of messages ${short}, connections closed ${closed}   target 0   ${verdict(lost === 0 && outOfOrder === 0 && closed === 0)}`)
  console.log(`  CPU during publishing (% of one core; the machine has ${(await import('node:os')).cpus().length} cores):`)
  console.log(`    ${names.map((n, i) => `${n} ${cpu[i]!.toFixed(0)}%`).join(', ')}`)
  for (const l of loaders) l.send({ type: 'close' } satisfies ToLoad)
  await sleep(200)
  killAll()
  return { p50, p99, lost }
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exit(1)
})
