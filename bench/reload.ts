/**
 * `npm run build && npx tsx bench/reload.ts [--connections 20] [--children 1] [--after 2000]`:
 * starts `espra-node up` (the sample app pushed), then for each of app,
 * fileserver, proxy and live runs `admin rolling-restart --role <role>` under
 * continuous keep-alive load on that node (the proxy: a Live read through it)
 * plus one Live publisher and a resuming subscriber through the proxy, and
 * prints what was sent, what failed (any status but 200, any socket error)
 * and the p99 latency during the restart, beside the same load's rate and
 * p99 for a few seconds just before it (no restart). One run, no thresholds: a figure,
 * not a test (tests/integration/rolling-restart.test.ts is the test).
 */
import { spawn } from 'node:child_process'
import { LIVE_HOST, startHttpLoad, startLiveCheck } from '../tests/helpers/reload-load.js'
import { BIN, freePortBlock, runCli } from '../tests/helpers/up.js'
import { ROLE_NAMES, type RoleName } from '../lib/core/config.js'
import { arg, helpFrom, sleep } from './args.js'
import { testDir } from '../tests/helpers/temp-dir.js'

helpFrom(import.meta.url)

const connections = arg('connections', 20)
const children = arg('children', 1)
const afterMs = arg('after', 2000)
const steadyMs = arg('steady', 5000)

const dir = testDir('espra-bench-reload-')
const base = await freePortBlock()
const port = (role: RoleName) => base + 1 + ROLE_NAMES.indexOf(role)
const up = spawn(process.execPath, [BIN, 'up', '--port-base', String(base), '--children', String(children)], { cwd: dir, env: { ...process.env, ESPRA_SECRET: '' } })
let out = ''
up.stdout.on('data', (d) => (out += d))
up.stderr.on('data', (d) => (out += d))
process.once('exit', () => up.kill('SIGKILL'))

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await Promise.resolve().then(check).catch(() => false)) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}\n${out}`)
}

await until('cluster up', () => out.includes('cluster up'))
await until('the sample app', async () => (await fetch(`http://127.0.0.1:${port('app')}/`)).status === 200)
await until('its assets', async () => (await fetch(`http://127.0.0.1:${port('fileserver')}/app/public/style.css`)).status === 200)
const token = (await runCli(['admin', 'token', '--pub', 'load:*', '--sub', 'load:*'], { cwd: dir })).stdout.trim()
const auth = { authorization: `Bearer ${token}` }
const targets: Record<string, () => ReturnType<typeof startHttpLoad>> = {
  app: () => startHttpLoad(port('app'), '/', { connections }),
  fileserver: () => startHttpLoad(port('fileserver'), '/app/public/style.css', { connections }),
  proxy: () => startHttpLoad(port('proxy'), '/history/load:read?limit=1', { connections, headers: { host: LIVE_HOST, ...auth } }),
  live: () => startHttpLoad(port('live'), '/history/load:read?limit=1', { connections, headers: auth }),
}

console.log(`up --children ${children}, ${connections} keep-alive clients per node, rolling-restart (reload mode) of each role; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`)
console.log(`steady: the same load for ${steadyMs / 1000}s just before, no restart`)
console.log('role        steady req/s  p99 ms | restart   HTTP sent  failed  p99 ms  max ms | publishes  failed  p99 ms  received  missing  out-of-order')
for (const role of Object.keys(targets)) {
  const http = targets[role]!()
  const live = await startLiveCheck(port('proxy'), LIVE_HOST, token, `load:bench-${role}`)
  await sleep(500)
  http.mark()
  await sleep(steadyMs)
  const steady = http.mark()
  live.mark()
  const t0 = Date.now()
  const run = await runCli(['admin', 'rolling-restart', '--role', role], { cwd: dir })
  const took = Date.now() - t0
  await sleep(afterMs)
  const [h, l] = await Promise.all([http.stop(), live.stop()])
  if (run.code !== 0) console.log(`${role}: rolling-restart exited ${run.code}: ${run.stderr.trim()}`)
  console.log([
    role.padEnd(10), String(Math.round(steady.sent / (steadyMs / 1000))).padStart(12), String(steady.p99Ms).padStart(7), '|', `${(took / 1000).toFixed(1)}s`.padStart(8), String(h.sent).padStart(11), String(h.failed).padStart(7), String(h.p99Ms).padStart(7), String(h.maxMs).padStart(7), '|',
    String(l.published).padStart(9), String(l.failedPublishes).padStart(7), String(l.p99Ms).padStart(7), String(l.received).padStart(9), String(l.missing).padStart(8), String(l.disorder).padStart(13),
  ].join(' ') + (h.failed + l.failedPublishes + l.missing > 0 ? `  failures: ${JSON.stringify({ ...h.failures, ...l.failures })} ${l.detail}` : ''))
}
up.kill('SIGINT')
await new Promise((r) => up.once('exit', r))
