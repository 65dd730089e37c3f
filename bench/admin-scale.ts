/**
 * Admin node scale bench: a real seed (bench/seed-scale-workers.ts), N
 * simulated nodes (real authenticated meta clients in a load process,
 * heartbeating at 1 Hz) whose public health answers come from small HTTP
 * servers in this process (so the admin node's prober sees them healthy),
 * and a real admin node from dist (one child, alerts on, default probe
 * interval) with D dashboards open: SSE streams with node snapshots
 * (`GET /api/events?nodes=1`). Over a steady window it reports the admin
 * node's CPU and RSS (parent and child), the bytes the streams received, and
 * how long `GET /api/nodes` and `GET /api/history` take. Loopback only; it
 * stops by itself.
 *
 *   npm run build && npx tsx bench/admin-scale.ts [--nodes 200] [--dashboards 3] [--steady 30]
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { join } from 'node:path'
import { adminTokenLine, newAdminToken } from '../lib/core/options-admin.js'
import { arg, helpFrom, sleep } from './args.js'
import { BENCH_REGION, BENCH_SECRET, type FromLoad, type SimNode, type ToLoad } from './seed-scale-workers.js'
import { testDir } from '../tests/helpers/temp-dir.js'

helpFrom(import.meta.url)

const WORKERS = new URL('./seed-scale-workers.ts', import.meta.url).pathname
const BIN = new URL('../dist/bin/espra-node.js', import.meta.url).pathname
const HARD_LIMIT_MS = 300_000
const CLK_TCK = 100

const N = arg('nodes', 200)
const DASHBOARDS = arg('dashboards', 3)
const STEADY_S = arg('steady', 30)
const SIM_BASE_PORT = arg('sim-port', 31_000)
const ADMIN_PORT = arg('port', 30_985)

const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024
const childPids = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)

const processes: ChildProcess[] = []
const servers: Server[] = []
const streams: (() => void)[] = []
function stopAll(): void {
  streams.forEach((close) => close())
  servers.forEach((s) => s.close())
  for (const p of processes) p.kill('SIGKILL')
}

function get(path: string, token: string): Promise<{ status: number; ms: number; body: string }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: ADMIN_PORT, path, headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** A dashboard's stream: counts the bytes and the `nodes` snapshots it gets. */
function openDashboard(token: string, counts: { bytes: number; snapshots: number }): void {
  const req = request({ host: '127.0.0.1', port: ADMIN_PORT, path: '/api/events?nodes=1', headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
    res.on('data', (d: Buffer) => {
      counts.bytes += d.length
      counts.snapshots += d.toString('utf8').split('event: nodes\n').length - 1
    })
  })
  req.on('error', () => {})
  req.end()
  streams.push(() => req.destroy())
}

const pct = (values: number[], p: number): number => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)] ?? NaN

async function main(): Promise<void> {
  const hard = setTimeout(() => {
    console.error(`bench exceeded ${HARD_LIMIT_MS / 1000} s; stopping`)
    stopAll()
    process.exit(2)
  }, HARD_LIMIT_MS)

  const seed = fork(WORKERS, ['seed'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  processes.push(seed)
  const [{ port: seedPort }] = (await once(seed, 'message')) as [{ port: number }]

  const nodes: SimNode[] = [...Array(N).keys()].map((i) => ({ id: `sim-${String(i).padStart(5, '0')}`, live: i % 20 === 0, port: SIM_BASE_PORT + i }))
  for (const n of nodes) {
    const body = JSON.stringify({ ok: true, health: 'ok', role: n.live ? 'live' : 'app', node: n.id, region: BENCH_REGION })
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body))
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(n.port, '127.0.0.1', resolve))
    servers.push(server)
  }
  const loader = fork(WORKERS, ['load'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  processes.push(loader)
  loader.send({ type: 'start', seedPort, nodes, concurrency: 50 } satisfies ToLoad)
  const [ready] = (await once(loader, 'message')) as [Extract<FromLoad, { type: 'ready' }>]
  console.log(`seed on 127.0.0.1:${seedPort}; ${ready.registered}/${N} simulated nodes registered${ready.failed ? ` (${ready.failed} failed)` : ''}`)

  const dir = testDir('espra-bench-admin-')
  const token = newAdminToken()
  const tokens = join(dir, 'admin-tokens')
  writeFileSync(tokens, `${adminTokenLine('bench', 'operator', token)}\n`)
  chmodSync(tokens, 0o600)
  const admin = spawn(process.execPath, [BIN, '--role=admin', `--seed=127.0.0.1:${seedPort}`, '--children=1', `--port=${ADMIN_PORT}`, `--metrics-port=${ADMIN_PORT + 1}`,
    `--data-dir=${join(dir, 'data')}`, `--admin-tokens-file=${tokens}`, '--bind=127.0.0.1', '--advertise=127.0.0.1', '--node-id=bench-admin', '--log-level=warn'],
  { env: { ...process.env, ESPRA_SECRET: BENCH_SECRET }, stdio: ['ignore', 'ignore', 'inherit'] })
  processes.push(admin)
  for (let i = 0; ; i++) {
    const a = await get('/api/nodes', token).catch(() => null)
    if (a?.status === 200 && (JSON.parse(a.body) as { id: string }[]).filter((n) => n.id.startsWith('sim-') || n.id === 'bench-admin').length >= N + 1) break
    if (i > 300) throw new Error('the admin node never listed every node')
    await sleep(200)
  }
  const counts = { bytes: 0, snapshots: 0 }
  for (let d = 0; d < DASHBOARDS; d++) openDashboard(token, counts)
  await sleep(12_000) // a probe round (10 s) and the first history sample
  const [child] = childPids(admin.pid!)
  if (child === undefined) throw new Error('the admin node has no child')
  const pids = { parent: admin.pid!, child }
  const cpu0 = { parent: cpuSeconds(pids.parent), child: cpuSeconds(pids.child) }
  const bytes0 = counts.bytes
  const snapshots0 = counts.snapshots
  const nodesMs: number[] = []
  const historyMs: number[] = []
  const t0 = Date.now()
  while (Date.now() - t0 < STEADY_S * 1000) {
    nodesMs.push((await get('/api/nodes', token)).ms)
    historyMs.push((await get('/api/history', token)).ms)
    await sleep(1000)
  }
  const wall = (Date.now() - t0) / 1000
  const cpu = { parent: (100 * (cpuSeconds(pids.parent) - cpu0.parent)) / wall, child: (100 * (cpuSeconds(pids.child) - cpu0.child)) / wall }
  const alerts = JSON.parse((await get('/api/alerts?state=open', token)).body) as { alerts: { rule: string }[] }
  const probes = JSON.parse((await get('/api/probes', token)).body) as unknown[]

  console.log('')
  console.log(`admin node, ${N} simulated nodes heartbeating at 1 Hz, probed every 10 s, ${DASHBOARDS} dashboards streaming node snapshots, ${wall.toFixed(0)} s window:`)
  console.log(`  CPU   parent (prober, alert engine) ${cpu.parent.toFixed(1)}% of a core; child (API, dashboards) ${cpu.child.toFixed(1)}%; total ${(cpu.parent + cpu.child).toFixed(1)}%`)
  console.log(`  RSS   parent ${rssMb(pids.parent).toFixed(0)} MB, child ${rssMb(pids.child).toFixed(0)} MB`)
  console.log(`  streams: ${((counts.bytes - bytes0) / wall / 1024).toFixed(1)} KB/s to ${DASHBOARDS} dashboards, ${counts.snapshots - snapshots0} node snapshots`)
  console.log(`  GET /api/nodes p50/max ${pct(nodesMs, 50).toFixed(1)} / ${Math.max(...nodesMs).toFixed(1)} ms; GET /api/history p50/max ${pct(historyMs, 50).toFixed(1)} / ${Math.max(...historyMs).toFixed(1)} ms`)
  console.log(`  probed ${probes.length} nodes; open alerts: ${alerts.alerts.length === 0 ? 'none' : alerts.alerts.map((a) => a.rule).join(', ')}`)
  clearTimeout(hard)
  stopAll()
}

main().catch((err) => {
  console.error(err)
  stopAll()
  process.exit(1)
})
