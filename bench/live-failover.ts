/**
 * Live failover bench (issue #16): a real seed, 3 real Live nodes
 * (`espra-node` from dist, default heartbeats: 1 s, timeout 3 s) behind a
 * real proxy node, N WebSocket subscribers of C channels connecting through
 * the proxy (each with its own `espra_session` cookie, so they spread over
 * the nodes; load processes, bench/live-failover-load.ts) that reconnect
 * through the proxy on a drop and resume with `since` = the last seq seen,
 * and a publisher in this process sending R messages/s in all over HTTP
 * through the proxy (`POST /pub/<ch>`, round robin over the channels), each
 * with a publish id (`Idempotency-Key`) and sent again with the same id
 * until acknowledged (for up to 10 s).
 *
 * Phases under the same load: `kill -9` of one Live node (parent and
 * children; a random one) at a random moment --steady to 2 × --steady
 * seconds into the load, then (unless --no-second-kill) of a second
 * one --gap-seconds later; the killed nodes started again; then
 * `espra-node admin rolling-restart --role live` of all three, in reload mode
 * (children replaced, the node stays) and then in restart mode (`--mode
 * restart --grace 2s --min-healthy 2`: each node exits 75 and this bench,
 * as its process manager, starts it again).
 * Printed per phase: acknowledged messages lost (an acknowledged publish a
 * subscriber of its channel never got), duplicates delivered, gaps the
 * server reported (`sub-ok` with `recovered: false`, by cause), publishes
 * that failed for good, and for a kill the resume time p50/p99 from the kill
 * to each affected subscriber's first message after it. Targets: 0 lost, 0
 * duplicates, resume p99 <= 3 s, rolling restart 0 lost and 0 failed
 * publishes. With `--replicas 1` a kill loses the dead home's history:
 * MISSED is the expected answer there, counted, not hidden.
 * Loopback only; stops by itself and kills everything it started.
 *
 *   npm run build && npx tsx bench/live-failover.ts [--subscribers 1000] [--channels 50] [--rate 2000] [--gap-seconds 60] [--no-second-kill] [--steady 5] [--settle 10] [--loaders 2] [--children 1] [--replicas 2]
 */
import { fork, type ChildProcess } from 'node:child_process'
import { Agent, request } from 'node:http'
import { loadavg } from 'node:os'
import { deriveTokenKey, mintToken } from '../lib/live/token.js'
import { runCli } from '../tests/helpers/up.js'
import { arg, helpFrom, sleep } from './args.js'
import { adopt, BENCH_SECRET, freePorts, guard, killAll, nextMessage, startEspra, type EspraNode } from './live-common.js'
import { channelOf, type FromFailoverLoad, type ToFailoverLoad } from './live-failover-load.js'

helpFrom(import.meta.url)

const SUBSCRIBERS = arg('subscribers', 1000)
const CHANNELS = arg('channels', 50)
const RATE = arg('rate', 2000)
const GAP_S = arg('gap-seconds', 60)
const SETTLE_S = arg('settle', 10)
const STEADY_S = arg('steady', 5)
const LOADERS = arg('loaders', 2)
const CHILDREN = arg('children', 1)
/** `--live-replicas` of the Live nodes (2, the product's default: each channel's backup takes over its history when its home is killed). */
const REPLICAS = arg('replicas', 2)
const SECOND_KILL = !process.argv.includes('--no-second-kill')
const HOST = 'us-1.live.localhost'
const LOAD = new URL('./live-failover-load.ts', import.meta.url).pathname
const RETRY_FOR_MS = 10_000
/** A publish's answer is waited for this long at most (the proxy's own deadline for a forwarded request is longer). */
const ANSWER_MS = 5_000

const load = () => `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`
const pctOf = (values: number[], p: number) => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED')

interface Phase { name: string; kind: 'steady' | 'kill' | 'rejoin' | 'rolling'; lo: number; hi: number; fromMs: number; toMs: number; failed: number }

async function main(): Promise<void> {
  const hard = guard((GAP_S + 2 * STEADY_S + 4 * SETTLE_S + 360) * 1000)
  console.log(`${load()} before`)
  const meta = await freePorts()
  const seedAddr = `127.0.0.1:${meta}`
  await startEspra('seed', await freePorts(), { seed: seedAddr, 'meta-port': meta, 'seed-grace': '0' })
  const liveFlags = { seed: seedAddr, children: CHILDREN, 'live-public': 'failover:*', 'live-replicas': REPLICAS }
  const ids = ['live-a', 'live-b', 'live-c']
  const ports = await Promise.all(ids.map(() => freePorts()))
  const lives: (EspraNode | null)[] = []
  let restarts = 0
  /** Starts Live node k; like the shipped systemd unit, starts it again when it exits 75 (a rolling restart's order). */
  const startLive = async (k: number): Promise<EspraNode> => {
    const n = await startEspra('live', ports[k]!, { ...liveFlags, 'node-id': ids[k]! })
    lives[k] = n
    n.proc.once('exit', (code) => {
      if (code !== 75) return
      restarts++
      lives[k] = null
      void startLive(k).catch((err: Error) => console.error(`${ids[k]} did not start again: ${err.message}`))
    })
    return n
  }
  for (const k of ids.keys()) await startLive(k)
  const inTable = (n: EspraNode, nodes: number) => n.waitForLog((l) => l['msg'] === 'live: routing table applied' && l['nodes'] === nodes && l['listed'] === true, `${nodes} nodes in the routing table`)
  for (const n of lives) await inTable(n!, 3)
  // Every client of the bench comes from 127.0.0.1: the per-address connection limit (1,000 by default) would refuse them.
  const proxy = await startEspra('proxy', await freePorts(), { seed: seedAddr, children: 1, 'live-domain': 'localhost', 'max-conns-per-address': 0 })

  // Publisher: through the proxy, keep-alive, publish id `fo-<i>`, sent again with the same id until acknowledged.
  const tok = mintToken(deriveTokenKey(BENCH_SECRET), { pub: ['failover:*'], ttlMs: 3_600_000 })
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  const acked: boolean[] = []
  /** Per publish: ms from its first attempt to its acknowledgement (time queued in the bench's agent included). */
  const answerMs: number[] = []
  const gaveUp = new Set<number>()
  let sent = 0
  const failures = new Map<string, number>()
  /** `sentAt`: when its first attempt left the bench (got a socket): the retry window counts from there, not from the time it queued here. */
  const post = (i: number, firstAt: number, sentAt?: number): void => {
    const body = JSON.stringify({ i })
    const retry = (why: string) => {
      failures.set(why, (failures.get(why) ?? 0) + 1)
      const since = sentAt ?? Date.now()
      if (Date.now() - since < RETRY_FOR_MS) setTimeout(() => post(i, firstAt, since), 200)
      else gaveUp.add(i)
    }
    const req = request({ host: '127.0.0.1', port: proxy.port, method: 'POST', path: `/pub/${channelOf(i, CHANNELS)}`, agent, headers: { host: HOST, cookie: `espra_session=pub-${i % 16}`, authorization: `Bearer ${tok}`, 'idempotency-key': `fo-${i}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => {
        if (res.statusCode !== 200) return retry(String(res.statusCode))
        acked[i] = true
        answerMs[i] = Date.now() - firstAt
      })
    })
    req.once('socket', () => (sentAt ??= Date.now()))
    req.on('error', (err) => retry((err as NodeJS.ErrnoException).code ?? err.message))
    // A publish unanswered this long is sent again with its id (as a client would), so a hung request cannot hold one of the agent's sockets for good.
    req.setTimeout(ANSWER_MS, () => req.destroy(Object.assign(new Error('no answer'), { code: 'timeout' })))
    req.end(body)
  }
  // The proxy has a routing table once a publish through it is acknowledged (index -1 is outside every tally).
  for (let ok = false; !ok; await sleep(200)) {
    ok = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port: proxy.port, method: 'POST', path: '/pub/failover:probe', agent, headers: { host: HOST, authorization: `Bearer ${tok}`, 'content-type': 'application/json' } }, (res) => {
        res.resume()
        resolve(res.statusCode === 200)
      })
      req.on('error', () => resolve(false))
      req.end('{"i":-1}')
    })
  }

  // Subscribers.
  const loaders: ChildProcess[] = Array.from({ length: LOADERS }, () => {
    const p = fork(LOAD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    adopt(p)
    return p
  })
  const t0 = Date.now()
  let first = 0
  const ready = await Promise.all(loaders.map((l, k) => {
    const count = Math.floor(SUBSCRIBERS / LOADERS) + (k < SUBSCRIBERS % LOADERS ? 1 : 0)
    const answer = nextMessage<Extract<FromFailoverLoad, { type: 'ready' }>>(l, 'ready')
    l.send({ type: 'start', port: proxy.port, host: HOST, first, count, channels: CHANNELS, concurrency: 50 } satisfies ToFailoverLoad)
    first += count
    return answer
  }))
  const connected = ready.reduce((s, r) => s + r.connected, 0)
  const errs = ready.flatMap((r) => r.errors)
  console.log(`seed, proxy, 3 Live nodes (${CHILDREN} child each); ${connected}/${SUBSCRIBERS} subscribers of ${CHANNELS} channels through the proxy in ${Date.now() - t0} ms${errs.length ? `; errors: ${errs.join(' | ')}` : ''}; publishing ${RATE}/s`)

  const pubStart = performance.now()
  const tick = setInterval(() => {
    const due = Math.floor(((performance.now() - pubStart) / 1000) * RATE)
    while (sent < due) post(sent, Date.now()), sent++
  }, 2)

  const phases: Phase[] = []
  const failedNow = () => [...failures.values()].reduce((s, n) => s + n, 0)
  const begin = (name: string, kind: Phase['kind']) => {
    const prev = phases.at(-1)
    if (prev) Object.assign(prev, { hi: sent, toMs: Date.now(), failed: failedNow() - prev.failed })
    phases.push({ name, kind, lo: sent, hi: sent, fromMs: Date.now(), toMs: 0, failed: failedNow() })
    if (kind !== 'kill') console.log(`${new Date().toISOString()} ${name}`)
  }
  const kill = (name: string) => {
    const alive = lives.map((n, k) => [n, k] as const).filter(([n]) => n !== null)
    const [victim, k] = alive[Math.floor(Math.random() * alive.length)]!
    begin(`${name}: kill -9 ${ids[k]}`, 'kill')
    for (const pid of [...victim!.children(), victim!.pid]) process.kill(pid, 'SIGKILL')
    lives[k] = null
    console.log(`${new Date().toISOString()} kill -9 ${ids[k]} (pid ${victim!.pid})`)
  }

  begin('steady', 'steady')
  await sleep((STEADY_S + Math.random() * STEADY_S) * 1000)
  kill('kill 1')
  await sleep(GAP_S * 1000)
  if (SECOND_KILL) {
    kill('kill 2')
    await sleep(SETTLE_S * 1000)
  }
  begin('killed nodes started again', 'rejoin')
  for (const k of ids.keys()) if (lives[k] === null) await startLive(k)
  for (const n of lives) await inTable(n!, 3)
  await sleep(SETTLE_S * 1000)
  for (const mode of [[], ['--mode', 'restart', '--grace', '2s', '--min-healthy', '2']]) {
    begin(`rolling restart (${mode.length ? mode.join(' ') : 'reload'})`, 'rolling')
    const t = Date.now()
    const run = await runCli(['admin', 'rolling-restart', '--role', 'live', '--seed', seedAddr, '--timeout', '120s', ...mode], { env: { ...process.env, ESPRA_SECRET: BENCH_SECRET } })
    console.log(`${new Date().toISOString()} rolling-restart exited ${run.code} after ${((Date.now() - t) / 1000).toFixed(1)} s${run.code !== 0 ? `: ${run.stderr.trim()}` : ''}; nodes started again after exit 75: ${restarts}`)
    await sleep(SETTLE_S * 1000)
  }
  clearInterval(tick)
  begin('end', 'steady')
  phases.pop()

  // Drain: every publish acknowledged or given up on (waited for while answers keep coming), then 3 s for the last deliveries.
  const settled = () => acked.filter(Boolean).length + gaveUp.size
  const drainLimit = Date.now() + 120_000
  for (let until = Date.now() + RETRY_FOR_MS + 2000, before = settled(); settled() < sent && Date.now() < until; await sleep(200)) {
    // A backlog still draining: wait on while it moves, 2 minutes at most.
    if (settled() > before) until = Math.max(until, Math.min(Date.now() + 5000, drainLimit))
    before = settled()
  }
  await sleep(3000)
  const unacked: number[] = []
  for (let i = 0; i < sent; i++) if (!acked[i]) unacked.push(i)
  const tallies = await Promise.all(loaders.map((l) => {
    const answer = nextMessage<Extract<FromFailoverLoad, { type: 'tally' }>>(l, 'tally')
    l.send({ type: 'tally', phases: phases.map(({ name, lo, hi }) => ({ name, lo, hi })), unacked } satisfies ToFailoverLoad)
    return answer
  }))
  agent.destroy()

  console.log('')
  console.log(`published ${sent} (acknowledged ${sent - unacked.length}, failed for good ${gaveUp.size}, unanswered at the end ${unacked.length - gaveUp.size}; failed attempts ${JSON.stringify(Object.fromEntries(failures))}); subscribers reconnected ${tallies.reduce((s, t) => s + t.reconnects, 0)} times`)
  const gaps = tallies.flatMap((t) => t.gaps)
  const resumes = tallies.flatMap((t) => t.resumes)
  for (const [p, ph] of phases.entries()) {
    const lost = tallies.reduce((s, t) => s + t.phases[p]!.lost, 0)
    const dups = tallies.reduce((s, t) => s + t.phases[p]!.duplicates, 0)
    const expected = tallies.reduce((s, t) => s + t.phases[p]!.expected, 0)
    const failed = [...gaveUp].filter((i) => i >= ph.lo && i < ph.hi).length
    const unanswered = unacked.filter((i) => i >= ph.lo && i < ph.hi && !gaveUp.has(i)).length
    const answers = answerMs.slice(ph.lo, ph.hi).filter((ms) => ms !== undefined)
    const inPhase = <T extends { atMs?: number; fromMs?: number }>(xs: T[]) => xs.filter((x) => (x.atMs ?? x.fromMs!) >= ph.fromMs && (x.atMs ?? x.fromMs!) < ph.toMs)
    const byCause = new Map<string, number>()
    for (const g of inPhase(gaps)) byCause.set(g.cause, (byCause.get(g.cause) ?? 0) + 1)
    const gapText = [...byCause].map(([c, n]) => `${n} ${c}`).join(', ') || 'none'
    console.log(`${ph.name} (${((ph.toMs - ph.fromMs) / 1000).toFixed(1)} s, publishes ${ph.lo}..${ph.hi - 1})`)
    console.log(`  lost ${lost} of ${expected} deliveries of acknowledged publishes, duplicates ${dups}   target 0 / 0   ${verdict(lost === 0 && dups === 0)}`)
    console.log(`  gaps reported: ${gapText}; publishes failed for good ${failed}${ph.kind === 'rolling' ? `   target 0   ${verdict(failed === 0)}` : ''} (failed attempts, sent again: ${ph.failed}), unanswered at the end ${unanswered}`)
    console.log(`  publish to acknowledgement p50 / p99 / max ${pctOf(answers, 50).toFixed(0)} / ${pctOf(answers, 99).toFixed(0)} / ${pctOf(answers, 100).toFixed(0)} ms (${answers.length} acknowledged; time queued in the publisher included)`)
    const hit = inPhase(resumes)
    if (ph.kind !== 'kill') {
      // No single moment to count from: each stall's own length.
      const stalls = hit.filter((r) => r.toMs > 0).map((r) => (r.toMs - r.fromMs) / 1000)
      if (hit.length) console.log(`  stalls ${hit.length} (${hit.filter((r) => r.why === 'drop').length} dropped, ${hit.filter((r) => r.why === 'restart').length} told the stream restarted), no message since ${hit.length - stalls.length}; from the stall to the next message p50 / p99 / max ${pctOf(stalls, 50).toFixed(2)} / ${pctOf(stalls, 99).toFixed(2)} / ${pctOf(stalls, 100).toFixed(2)} s`)
      continue
    }
    const times = hit.filter((r) => r.toMs > 0).map((r) => (r.toMs - ph.fromMs) / 1000)
    const never = hit.length - times.length
    const p99 = pctOf(times, 99)
    console.log(`  affected subscribers ${hit.length} (${hit.filter((r) => r.why === 'drop').length} dropped, ${hit.filter((r) => r.why === 'restart').length} told the stream restarted), no message since ${never}; resume p50 / p99 / max ${pctOf(times, 50).toFixed(2)} / ${p99.toFixed(2)} / ${pctOf(times, 100).toFixed(2)} s   target p99 <= 3 s   ${verdict(hit.length > 0 && never === 0 && p99 <= 3)}`)
  }
  const dupSamples = tallies.flatMap((t) => t.dupSamples)
  if (dupSamples.length) console.log(`duplicates (first few): ${dupSamples.slice(0, 5).join('; ')}`)
  const jumps = tallies.reduce((s, t) => s + t.silentJumps, 0)
  const late = tallies.reduce((s, t) => s + t.lateGaps, 0)
  console.log(`seq jumps with no gap reported before them (the protocol says never): ${jumps}, of which ${late} reported by a recovered: false sub-ok after the jump on the same connection${jumps ? `, e.g. ${tallies.flatMap((t) => t.jumpSamples).slice(0, 3).join('; ')}` : ''}`)
  const errors = tallies.flatMap((t) => t.errors)
  if (errors.length) console.log(`subscriber errors (first few): ${errors.slice(0, 5).join(' | ')}`)
  if (REPLICAS < 2) console.log('--live-replicas 1: losses and `lost` gaps after a kill are expected (each home\'s history dies with it); --replicas 2 replicates it.')
  console.log(`${load()} after`)
  clearTimeout(hard)
  for (const l of loaders) l.send({ type: 'close' } satisfies ToFailoverLoad)
  await sleep(200)
  killAll()
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exit(1)
})
