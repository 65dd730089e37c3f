/**
 * Live connections bench: a real seed and ONE real Live node (`espra-node`
 * from dist) with ONE child by default (`--children`), then N idle WebSocket
 * connections with 2 subscriptions each (one of 1,000 shared channels, one of
 * its own), opened from several load processes (bench/live-load.ts), each
 * bound to its own 127.0.0.x source address so no single (source, target)
 * pair runs out of ephemeral ports (32768–60999: about 28k). Prints the Live
 * child's and parent's RSS (VmRSS from /proc) before and after, and RSS per
 * connection. Loopback only; stops by itself and kills everything it started.
 *
 * Open files: a process holds at most `ulimit -n` sockets. Raise it before
 * running (`ulimit -n 200000`; needs a high enough hard limit or
 * CAP_SYS_RESOURCE). Where it cannot be raised, the bench opens what one
 * child can hold and says so; `--children 3` spreads the connections over
 * three children of the same node (SO_REUSEPORT) to get past it.
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/live-connections.ts [--connections 50000] [--children 1] [--per-loader 12500]
 */
import { arg, helpFrom, sleep } from './args.js'
import { cpuSeconds, freePorts, guard, killAll, nextMessage, openFilesLimit, rssKb, startEspra, startLoad } from './live-common.js'
import type { FromLoad, ToLoad } from './live-load.js'

helpFrom(import.meta.url)

const WANTED = arg('connections', 50_000)
const CHILDREN = arg('children', 1)
const PER_LOADER = arg('per-loader', 12_500)
/** Files a process needs besides its sockets (stdio, IPC, epoll, timers, the listener, the link). */
const FD_RESERVE = 256

async function main(): Promise<void> {
  const hard = guard(300_000)
  const fdLimit = openFilesLimit()
  const perProcess = fdLimit - FD_RESERVE
  const reachable = Math.min(WANTED, Math.floor(perProcess * CHILDREN * 0.97)) // SO_REUSEPORT spreads unevenly: keep 3% headroom
  console.log(`open files limit (ulimit -n) ${fdLimit}: one process can hold about ${perProcess} sockets; ${CHILDREN} Live child${CHILDREN > 1 ? 'ren' : ''}`)
  if (reachable < WANTED) {
    console.log(`  → opening ${reachable} of the ${WANTED} wanted: with ${CHILDREN} child${CHILDREN > 1 ? 'ren' : ''} the Live node cannot hold more sockets under this limit.`)
    console.log(`    Raise it (ulimit -n 200000, needs the hard limit or CAP_SYS_RESOURCE) or pass --children ${Math.ceil(WANTED / (perProcess * 0.97))}.`)
  }

  const meta = await freePorts()
  const seedFlags = { seed: `127.0.0.1:${meta}`, 'heartbeat-interval': '1s' }
  const seed = await startEspra('seed', await freePorts(), { ...seedFlags, 'meta-port': meta, 'seed-grace': '0' })
  const live = await startEspra('live', await freePorts(), { ...seedFlags, 'node-id': 'live-a', children: CHILDREN, 'live-public': 'room:*,user:*' })
  await live.waitForLog((l) => l['msg'] === 'live: routing table applied' && l['listed'] === true, 'live node listed')
  await sleep(2000)
  const kids = live.children()
  const before = { parent: rssKb(live.pid), children: kids.map(rssKb) }
  console.log(`seed pid ${seed.pid}; live pid ${live.pid} :${live.port}, child pid${kids.length > 1 ? 's' : ''} ${kids.join(', ')}`)
  console.log(`RSS before: parent ${(before.parent / 1024).toFixed(1)} MB, child${kids.length > 1 ? 'ren' : ''} ${before.children.map((k) => (k / 1024).toFixed(1)).join(' + ')} MB`)

  const perLoader = Math.min(PER_LOADER, perProcess)
  const loaderCount = Math.ceil(reachable / perLoader)
  const loaders = Array.from({ length: loaderCount }, () => startLoad())
  const connected = new Array<number>(loaderCount).fill(0)
  loaders.forEach((l, i) => l.on('message', (m: FromLoad) => m.type === 'progress' && (connected[i] = m.connected)))
  const t0 = Date.now()
  const progress = setInterval(() => console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${connected.reduce((a, b) => a + b, 0)} connected`), 5000)
  const ready = await Promise.all(
    loaders.map((l, i) => {
      const first = i * perLoader
      const count = Math.min(perLoader, reachable - first)
      const answer = nextMessage<Extract<FromLoad, { type: 'ready' }>>(l, 'ready')
      l.send({ type: 'idle', port: live.port, count, first, localAddress: `127.0.0.${10 + i}`, concurrency: 50 } satisfies ToLoad)
      return answer
    }),
  )
  clearInterval(progress)
  const total = ready.reduce((s, r) => s + r.connected, 0)
  const rampMs = Date.now() - t0
  const failed = ready.reduce((s, r) => s + r.failed, 0)
  console.log(`${total} connections × 2 subscriptions in ${(rampMs / 1000).toFixed(1)} s from ${loaderCount} load processes (source addresses 127.0.0.10–${10 + loaderCount - 1})${failed ? `; ${failed} failed: ${ready.flatMap((r) => r.errors).join(' | ')}` : ''}`)

  // Let allocations settle (the children collect garbage when idle), then read RSS.
  await sleep(8000)
  const cpu0 = kids.map(cpuSeconds)
  await sleep(5000)
  const idleCpu = kids.map((k, i) => (100 * (cpuSeconds(k) - cpu0[i]!)) / 5)
  const after = { parent: rssKb(live.pid), children: kids.map(rssKb) }
  const childDelta = after.children.reduce((s, v) => s + v, 0) - before.children.reduce((s, v) => s + v, 0)
  const parentDelta = after.parent - before.parent
  const perConn = childDelta / total
  console.log('')
  console.log(`RSS after:  parent ${(after.parent / 1024).toFixed(1)} MB (+${(parentDelta / 1024).toFixed(1)}), child${kids.length > 1 ? 'ren' : ''} ${after.children.map((k) => (k / 1024).toFixed(1)).join(' + ')} MB (+${(childDelta / 1024).toFixed(1)})`)
  console.log(`  per connection (children): ${perConn.toFixed(2)} KB   target <= 10 KB   ${perConn <= 10 ? 'ok' : 'MISSED'}`)
  console.log(`  per connection (children + parent): ${((childDelta + parentDelta) / total).toFixed(2)} KB`)
  console.log(`  idle CPU of the child${kids.length > 1 ? 'ren' : ''} with ${total} connections: ${idleCpu.map((c) => `${c.toFixed(1)}%`).join(', ')} (uWS pings idle sockets)`)
  console.log(`  connections held: ${total} of ${WANTED} wanted   ${total >= WANTED ? 'ok' : `MISSED (${reachable < WANTED ? `open files limit ${fdLimit} per process` : 'see failures above'})`}`)
  clearTimeout(hard)
  for (const l of loaders) l.send({ type: 'close' } satisfies ToLoad)
  await sleep(300)
  killAll()
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exit(1)
})
