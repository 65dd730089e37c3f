/**
 * Proxy bench: wrk through one espra proxy node (2 children) to a plain HTTP
 * backend (a uWS hello world standing in for a Live node's HTTP endpoint,
 * registered with a real seed as a `live` node), versus haproxy (2 threads,
 * keep-alive to the backend, `http-reuse always`, X-Forwarded-For and -Proto
 * added as the espra proxy adds them) to the same backend,
 * versus the backend directly, versus a bare Node pipe (one process, no HTTP:
 * the ceiling for any proxy on Node's sockets). The targets run in rounds
 * whose order turns each round; prints req/s, p99 and server CPU of each run,
 * the best and the median round of each, and the ratios (req/s from the best
 * rounds and from the median ones, p99 from the median ones), with the load
 * average before and after.
 * Loopback on one machine: every process shares the same cores, so the
 * figures are relative only. Needs `npm run build`, `wrk` and `haproxy`.
 *
 *   npx tsx bench/proxy.ts [--connections 100] [--duration 10] [--threads 2] [--rounds 3] [--children 2] [--against <checkout>]
 *   --against adds a second espra proxy node run from another checkout (its
 *   `dist/` built, e.g. a `git worktree` of an older commit) on the same seed:
 *   before and after a change, measured in the same rounds.
 *   BENCH_LUA=<wrk script> adds the script to every run and prints its status lines.
 */
import { arg, helpFrom, sleep, textArg } from './args.js'
import { descendants } from './live-common.js'
import { formatMeasured, loadAverage, measureRounds, requireTools, type Measured, type Target } from './wrk.js'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { createLogger } from '../lib/core/log.js'
import { VERSION } from '../lib/core/version.js'
import { createMetaClient } from '../lib/transport/meta-client.js'
import { testDir } from '../tests/helpers/temp-dir.js'

const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'dist/bin/espra-node.js')
const SECRET = 'bench-cluster-secret-0123456789'
const HOST = 'us-1.live.localhost'

helpFrom(import.meta.url)
const CONNECTIONS = arg('connections', 100)
const DURATION_S = arg('duration', 10)
const THREADS = arg('threads', 2)
const ROUNDS = arg('rounds', 3)
const CHILDREN = arg('children', 2)
const AGAINST = textArg('against')
const AGAINST_BIN = AGAINST === undefined ? undefined : join(resolve(AGAINST), 'dist/bin/espra-node.js')
if (AGAINST_BIN !== undefined && !existsSync(AGAINST_BIN)) throw new Error(`--against: ${AGAINST_BIN} does not exist; run npm run build in that checkout`)

const procs: ChildProcess[] = []
process.on('exit', () => {
  for (const p of procs) p.kill('SIGKILL')
})

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] })
  procs.push(p)
  return p
}

async function waitHttp(port: number, host: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      // node:http, not fetch: fetch drops a Host header silently.
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false }, (res) => {
          res.resume()
          resolve(res.statusCode!)
        })
        req.on('error', reject)
        req.end()
      })
      if (status === 200) return
    } catch {
      // not yet
    }
    await sleep(50)
  }
  throw new Error(`nothing answers 200 on ${port}`)
}

async function main(): Promise<void> {
  requireTools('wrk', 'haproxy')
  const dir = testDir('espra-bench-proxy-')
  const [backendPort, metaPort, proxyPort, proxyMetrics, seedPort, seedMetrics, haproxyPort, pipePort, againstPort, againstMetrics] = await Promise.all(Array.from({ length: 10 }, freePort))

  // The backend: uWS hello world in its own process.
  const backendCode = `
    const { uws } = await import(${JSON.stringify(join(ROOT, 'dist/lib/http/uws.js'))});
    uws.App().any('/*', (res) => { res.end('hello world') }).listen('127.0.0.1', ${backendPort}, (s) => { if (!s) process.exit(1) });`
  const backend = start(process.execPath, ['--input-type=module', '-e', backendCode])
  await waitHttp(backendPort, HOST)

  // A real seed and a real proxy node (2 children).
  const env = { ...process.env, ESPRA_SECRET: SECRET }
  const common = ['--bind=127.0.0.1', '--advertise=127.0.0.1', `--data-dir=${dir}`, '--log-level=warn']
  start(process.execPath, [BIN, '--role=seed', `--meta-port=${metaPort}`, `--port=${seedPort}`, `--metrics-port=${seedMetrics}`, ...common], env)
  await sleep(500)
  // The backend registers as a live node through a real meta client.
  const live = createMetaClient({
    seeds: [`127.0.0.1:${metaPort}`], secret: SECRET, peer: { kind: 'node', id: 'bench-live' }, maxFrame: 1024 * 1024,
    log: createLogger('silent', { role: 'bench', node: 'bench' }), reconnect: true,
    onConnect: async (link) => void (await link.request('register', {
      id: 'bench-live', role: 'live', region: 'us-1', address: '127.0.0.1', port: backendPort, metricsPort: 0, pid: process.pid,
      version: VERSION, children: 1, childrenWanted: 1, build: null, health: 'ok', startedAt: Date.now(),
    })),
  })
  const beat = setInterval(() => live.send('heartbeat', { health: 'ok', children: 1, build: null, load: { connections: 0, rps: 0, rssBytes: 1, lagMs: 0 } }), 500)
  await live.ready
  const startProxy = (bin: string, port: number, metrics: number, id: string) =>
    start(process.execPath, [bin, '--role=proxy', `--node-id=${id}`, `--children=${CHILDREN}`, `--seed=127.0.0.1:${metaPort}`, `--port=${port}`, `--metrics-port=${metrics}`, ...common], env)
  const proxy = startProxy(BIN, proxyPort, proxyMetrics, 'bench-proxy')
  await waitHttp(proxyPort, HOST)
  const against = AGAINST_BIN === undefined ? null : startProxy(AGAINST_BIN, againstPort, againstMetrics, 'bench-proxy-against')
  if (against !== null) await waitHttp(againstPort, HOST)

  // haproxy: 2 threads, keep-alive to the backend, connections reused across clients,
  // and the same work on each request as the espra proxy: X-Forwarded-For and -Proto added.
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, [
    'global', '  nbthread 2', '  maxconn 4000',
    'defaults', '  mode http', '  option http-keep-alive', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s',
    'frontend f', `  bind 127.0.0.1:${haproxyPort}`, '  default_backend b',
    'backend b', '  http-reuse always', '  option forwardfor', '  http-request set-header X-Forwarded-Proto http', `  server live 127.0.0.1:${backendPort}`, '',
  ].join('\n'))
  const haproxy = start('haproxy', ['-f', cfg, '-db'])
  await waitHttp(haproxyPort, HOST)

  // The ceiling of any proxy on Node's sockets here: one process that reads the way the espra proxy
  // does (onread into one buffer) and pipes each client connection to its own backend connection,
  // with no HTTP at all: no parsing, framing, routing or X-Forwarded-*.
  const pipeCode = `
    const net = await import('node:net');
    const { adopt, copyRead, onread } = await import(${JSON.stringify(join(ROOT, 'dist/roles/proxy/reads.js'))});
    net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
      let up;
      const client = adopt(accepted, onread((n) => up.write(copyRead(n))));
      up = net.connect({ host: '127.0.0.1', port: ${backendPort}, noDelay: true, onread: onread((n) => client.write(copyRead(n))) });
      for (const [a, b] of [[client, up], [up, client]]) { a.on('error', () => {}); a.on('close', () => b.destroy()) }
    }).listen(${pipePort}, '127.0.0.1');`
  const pipe = start(process.execPath, ['--input-type=module', '-e', pipeCode])
  await waitHttp(pipePort, HOST)

  const lua = process.env['BENCH_LUA']
  const target = (name: string, port: number, server: ChildProcess): Target =>
    ({ name, url: `http://127.0.0.1:${port}/`, headers: { Host: HOST }, pids: () => [server.pid!, ...descendants(server.pid!)] })
  const targets = [target('backend direct', backendPort, backend), target('haproxy', haproxyPort, haproxy), target('espra proxy', proxyPort, proxy), target('bare node pipe', pipePort, pipe)]
  if (against !== null) targets.push(target('espra proxy (against)', againstPort, against))
  if (AGAINST !== undefined) console.log(`against: the espra proxy of ${resolve(AGAINST)}`)
  console.log(`wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION_S}s --latency, ${ROUNDS} round(s), the order turned each round; loopback, ${spawnSync('nproc').stdout.toString().trim()} cores shared by everything; load average before: ${loadAverage()}`)
  const { best, median } = await measureRounds(targets, ROUNDS, { threads: THREADS, connections: CONNECTIONS, durationS: DURATION_S, ...(lua ? { lua } : {}) },
    (m) => lua && console.log(m.stdout.split('\n').filter((l) => /^\d{3}\t/.test(l)).join('\n')))
  for (const [title, rounds] of [['best', best], ['median', median]] as const) {
    console.log(`${title}:`)
    for (const { name } of targets) console.log(`  ${formatMeasured(name, rounds.get(name)!)}`)
  }
  const ratio = (rounds: Map<string, Measured>, a: string, b: string, key: 'rps' | 'p99Ms') => (rounds.get(a)![key] / rounds.get(b)![key]).toFixed(2)
  console.log(`load average after: ${loadAverage()}`)
  console.log(`espra / haproxy: ${ratio(best, 'espra proxy', 'haproxy', 'rps')}x req/s best, ${ratio(median, 'espra proxy', 'haproxy', 'rps')}x median (target >= 1.0); p99 ${ratio(median, 'espra proxy', 'haproxy', 'p99Ms')}x median (target <= 1.5)`)
  if (against !== null) console.log(`espra proxy / espra proxy (against): ${ratio(best, 'espra proxy', 'espra proxy (against)', 'rps')}x req/s best, ${ratio(median, 'espra proxy', 'espra proxy (against)', 'rps')}x median; p99 ${ratio(median, 'espra proxy', 'espra proxy (against)', 'p99Ms')}x median`)
  console.log(`bare node pipe / haproxy: ${ratio(best, 'bare node pipe', 'haproxy', 'rps')}x req/s best (the ceiling for a proxy on Node's sockets, one process)`)
  clearInterval(beat)
  live.destroy()
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
