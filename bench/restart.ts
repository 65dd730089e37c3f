/**
 * `npm run build && npx tsx bench/restart.ts [--connections 20] [--grace 2]`:
 * a real seed, a proxy and two Live nodes, each Live node kept running by a
 * small process manager with the shipped systemd unit's rules (start again
 * on exit 75 or a failure, never on exit 0); `admin rolling-restart --role
 * live --mode restart --min-healthy 1` under continuous keep-alive load
 * through the proxy (`GET /history/<ch>` on the live host) plus one Live
 * publisher and a resuming subscriber through the proxy. Prints what was
 * sent, what failed (any status but 200, any socket error) and the p99
 * during the restart, beside the same load's rate and p99 for a few seconds
 * just before it. One run, no thresholds: a figure, not a test
 * (tests/integration/rolling-restart-mode.test.ts is the test).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { loadavg } from 'node:os'
import { LIVE_HOST, startHttpLoad, startLiveCheck } from '../tests/helpers/reload-load.js'
import { BIN, runCli } from '../tests/helpers/up.js'
import { arg, helpFrom, sleep } from './args.js'
import { testDir } from '../tests/helpers/temp-dir.js'

helpFrom(import.meta.url)

const connections = arg('connections', 20)
const graceS = arg('grace', 2)
const steadyMs = arg('steady', 5000)
const SECRET = 'bench-restart-secret-0123456789abcdef0123456789abcdef'
const FAST = ['--heartbeat-interval=200ms', '--heartbeat-timeout=1s']
const all: ChildProcess[] = []
process.once('exit', () => all.forEach((p) => p.kill('SIGKILL')))

const freePort = (): Promise<number> => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address() as { port: number }
    s.close(() => resolve(port))
  })
})

/** One node, started again on any exit but 0 (Restart=on-failure + RestartForceExitStatus=75); counts its exits. */
async function node(role: string, flags: string[]): Promise<{ port: number; exits: (number | null)[] }> {
  const port = await freePort()
  const args = [BIN, `--role=${role}`, `--port=${port}`, `--metrics-port=${await freePort()}`, '--bind=127.0.0.1', '--advertise=127.0.0.1',
    `--data-dir=${testDir('espra-bench-restart-')}`, '--log-level=warn', ...FAST, ...flags]
  const exits: (number | null)[] = []
  const start = (): void => {
    const p = spawn(process.execPath, args, { env: { ...process.env, ESPRA_SECRET: SECRET }, stdio: 'ignore' })
    all.push(p)
    p.once('exit', (code) => {
      exits.push(code)
      if (code !== 0 && code !== null) setTimeout(start, 200)
    })
  }
  start()
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/_espra/health`)).status === 200) break
    } catch {
      // not yet
    }
    await sleep(100)
  }
  return { port, exits }
}

const metaPort = await freePort()
const seed = `127.0.0.1:${metaPort}`
await node('seed', [`--meta-port=${metaPort}`, '--seed-grace=0'])
const a = await node('live', [`--seed=${seed}`, '--node-id=live-a', '--children=1'])
const b = await node('live', [`--seed=${seed}`, '--node-id=live-b', '--children=1'])
const proxy = await node('proxy', [`--seed=${seed}`, '--children=1', '--live-domain=localhost'])
const env = { ...process.env, ESPRA_SECRET: SECRET }
const token = (await runCli(['admin', 'token', '--pub', 'load:*', '--sub', 'load:*', '--seed', seed], { env })).stdout.trim()
await sleep(1000)

console.log(`seed, proxy, 2 Live nodes (1 child each); ${connections} keep-alive clients through the proxy; rolling-restart --mode restart --grace ${graceS}s; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
const http = startHttpLoad(proxy.port, '/history/load:read?limit=1', { connections, headers: { host: LIVE_HOST, authorization: `Bearer ${token}` } })
const live = await startLiveCheck(proxy.port, LIVE_HOST, token, 'load:bench-restart')
await sleep(500)
http.mark()
await sleep(steadyMs)
const steady = http.mark()
live.mark()
const t0 = Date.now()
const run = await runCli(['admin', 'rolling-restart', '--role', 'live', '--mode', 'restart', '--grace', `${graceS}s`, '--min-healthy', '1', '--seed', seed], { env })
const took = Date.now() - t0
await sleep(2000)
const [h, l] = await Promise.all([http.stop(), live.stop()])
if (run.code !== 0) console.log(`rolling-restart exited ${run.code}: ${run.stderr.trim()}`)
console.log(`steady before: ${Math.round(steady.sent / (steadyMs / 1000))} req/s, p99 ${steady.p99Ms} ms`)
console.log(`restart took ${(took / 1000).toFixed(1)}s; exits: live-a ${JSON.stringify(a.exits)}, live-b ${JSON.stringify(b.exits)}`)
console.log(`HTTP during it: ${h.sent} sent, ${h.failed} failed ${JSON.stringify(h.failures)}, p99 ${h.p99Ms} ms, max ${h.maxMs} ms`)
console.log(`publishes: ${l.published} sent, ${l.failedPublishes} failed ${JSON.stringify(l.failures)}, p99 ${l.p99Ms} ms; subscriber: ${l.received} received, ${l.missing} missing, ${l.disorder} out of order, ${l.unrecovered} resumes with recovered:false`)
process.exit(0)
