/**
 * Inbound mail bench: C concurrent SMTP clients (one connection each, one
 * message after another: MAIL, RCPT, DATA, 10 KB, `.`) against one real mail
 * node (a seed holding the datastore and the embedded task queue, an app node
 * whose `handleMail` returns at once), versus Haraka (`queue/discard`, the
 * same number of processes) on the same load, in alternating rounds. Every
 * message is unique (its own Message-ID), so none is answered as a retry.
 *
 * Prints per round: messages/s accepted (250), p99 from the end of DATA
 * (`.` written) to its 250, refusals, and the peak RSS of the server's
 * process tree (the mail node's parent and children; the seed apart). Needs
 * `npm run build`; Haraka from npm outside the project:
 *
 *   npm install --prefix /tmp/haraka Haraka
 *   HARAKA=/tmp/haraka/node_modules/Haraka npx tsx bench/mail-inbound.ts [--clients 20] [--size 10240] [--duration 10] [--rounds 2] [--children 2] [--cpu-prof <dir>]
 *
 * Each round also prints the CPU each process group used (100% = one core),
 * and the same as ms of CPU per accepted message, per group and in total.
 *
 * The nodes run the `dist/` beside this file (bench/live-common.ts `BIN`). To
 * measure another checkout (a worktree of main, built), copy this file into
 * its `bench/` and run it there, alternating with this one.
 *
 * espra verifies SPF, DKIM, DMARC and ARC of every message (its default;
 * `ESPRA_MAIL_AUTH=false` in the environment turns it off), its lookups
 * answered by a DNS server in the bench process; Haraka runs no such plugin.
 * Both log at their default level (info). Without HARAKA (or when it does
 * not start) only espra rounds run. `--no-app` starts no app node: messages
 * are recorded and queued but never handed, so the seed serves only the
 * intake (the handoffs' leases, reads and settles are the rest of its load).
 */
import { spawn } from 'node:child_process'
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { arg, sleep } from './args.js'
import { adopt, cpuSeconds, descendants, freePorts, guard, killAll, rssKb, tempDir } from './live-common.js'
import { pushBuild, startRegistered, startSeed, waitBuild } from './nodes.js'
import { startDnsServer } from '../tests/helpers/dns-server.js'
import { openSmtp } from '../tests/helpers/smtp-session.js'

const CLIENTS = arg('clients', 20)
const SIZE = arg('size', 10 * 1024)
const DURATION_S = arg('duration', 10)
const ROUNDS = arg('rounds', 2)
const CHILDREN = arg('children', 2)
const HARAKA = process.env['HARAKA'] ?? ''
// --cpu-prof <dir>: every espra process (seed, mail parent and children, app) writes a V8 CPU profile there when the bench ends.
const CPU_PROF = process.argv.includes('--cpu-prof') ? process.argv[process.argv.indexOf('--cpu-prof') + 1] ?? '' : ''
const NO_APP = process.argv.includes('--no-app')
if (process.argv.includes('--help')) {
  console.log('npx tsx bench/mail-inbound.ts [--clients 20] [--size 10240] [--duration 10] [--rounds 2] [--children 2] [--cpu-prof <dir>] [--no-app]\n' +
    '  HARAKA=<Haraka package dir> runs Haraka (queue/discard) in alternating rounds; ESPRA_MAIL_AUTH=false turns verification off.\n' +
    '  --cpu-prof <dir>: the espra processes write V8 CPU profiles (.cpuprofile) to <dir> at the end (they are stopped with SIGTERM).\n' +
    '  --no-app: no app node; messages are recorded and queued, never handed (the seed serves the intake alone).\n' +
    '  Each round prints CPU per accepted message (ms) per process group. The nodes run the dist/ beside this file: to measure\n' +
    '  another built checkout, copy this file into its bench/ and run it there.')
  process.exit(0)
}

const APP = `
export function handle() { return 'mail bench' }
export function handleMail() {}
`

interface Round {
  readonly accepted: number
  readonly refused: number
  readonly perSecond: number
  readonly p99Ms: number
  readonly p50Ms: number
  readonly rssMb: number
  readonly firstRefusal: string | null
  /** CPU seconds of every server process over the round, in ms per accepted message. */
  readonly serverCpuMs: number
}

/** One SMTP connection (tests/helpers/smtp-session.ts): commands one at a time, the last line of each reply. */
async function smtpClient(port: number): Promise<{ say(line: string | Buffer): Promise<string>; close(): void }> {
  const session = await openSmtp(port)
  if (!session.greeting.startsWith('220')) throw new Error(`greeting: ${session.greeting}`)
  return { say: (line) => (typeof line === 'string' ? session.command(line) : session.data(line)), close: () => session.close() }
}

function message(client: number, n: number): Buffer {
  const head = `From: Bench <bench@sender.test>\r\nTo: rcpt@example.test\r\nSubject: bench ${client}/${n}\r\nMessage-ID: <${client}.${n}.${process.pid}.${Date.now()}@sender.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n`
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n'
  return Buffer.from(head + line.repeat(Math.max(1, Math.ceil((SIZE - head.length) / line.length))) + '.\r\n', 'latin1')
}

/** CLIENTS clients for DURATION_S seconds; `pids` gives the server's processes for RSS. */
async function round(port: number, pids: () => number[], groups: Readonly<Record<string, () => number[]>> = {}): Promise<Round & { cpu: string; cpuPerMsg: string }> {
  const cpuOf = () => Object.fromEntries(Object.entries({ bench: () => [process.pid], ...groups }).map(([k, f]) => [k, f().reduce((sum, pid) => sum + (cpuSeconds(pid) || 0), 0)]))
  const cpu0 = cpuOf()
  const latencies: number[] = []
  let refused = 0
  let firstRefusal: string | null = null
  let peakKb = 0
  const sampler = setInterval(() => {
    const kb = pids().reduce((sum, pid) => sum + (rssKb(pid) || 0), 0)
    peakKb = Math.max(peakKb, kb)
  }, 250)
  const started = performance.now()
  const deadline = started + DURATION_S * 1000
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const s = await smtpClient(port)
    await s.say('EHLO bench.sender.test')
    for (let n = 0; performance.now() < deadline; n++) {
      const mail = await s.say('MAIL FROM:<bench@sender.test>')
      const rcpt = await s.say('RCPT TO:<rcpt@example.test>')
      const data = await s.say('DATA')
      if (!mail.startsWith('250') || !rcpt.startsWith('250') || !data.startsWith('354')) {
        refused++
        firstRefusal ??= `${mail} / ${rcpt} / ${data}`
        await s.say('RSET')
        continue
      }
      const body = message(c, n)
      const t0 = performance.now()
      const answer = await s.say(body)
      if (answer.startsWith('250')) latencies.push(performance.now() - t0)
      else {
        refused++
        firstRefusal ??= answer
      }
    }
    await s.say('QUIT')
    s.close()
  }))
  const seconds = (performance.now() - started) / 1000
  clearInterval(sampler)
  latencies.sort((a, b) => a - b)
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? NaN
  const cpu1 = cpuOf()
  const used = Object.fromEntries(Object.keys(cpu1).map((k) => [k, cpu1[k]! - cpu0[k]!]))
  const cpu = Object.entries(used).map(([k, s]) => `${k} ${fmt((s / seconds) * 100)}%`).join(', ')
  // CPU per accepted message (ms), per server group and over them all (the bench's own process apart).
  const server = Object.entries(used).filter(([k]) => k !== 'bench')
  const perMsg = (s: number) => (latencies.length === 0 ? NaN : (s * 1000) / latencies.length)
  const serverCpuMs = perMsg(server.reduce((sum, [, s]) => sum + s, 0))
  const cpuPerMsg = [...server.map(([k, s]) => `${k} ${fmt(perMsg(s), 2)}`), ...(server.length > 1 ? [`total ${fmt(serverCpuMs, 2)}`] : [])].join(', ')
  return { accepted: latencies.length, refused, perSecond: latencies.length / seconds, p99Ms: at(99), p50Ms: at(50), rssMb: peakKb / 1024, firstRefusal, cpu, cpuPerMsg, serverCpuMs }
}

async function startEspraMail(): Promise<{ port: number; pids: () => number[]; seedPid: number; stages: () => () => string; groups: Record<string, () => number[]>; stop(): Promise<void> }> {
  // The SPF/DKIM/DMARC lookups go to a DNS server in this process holding the sender's records, as they would to a
  // local caching resolver: this machine's own resolver has no network behind it and stalls lookups for a second.
  const dns = await startDnsServer({ 'sender.test': { txt: 'v=spf1 ip4:127.0.0.1 -all' }, '_dmarc.sender.test': { txt: 'v=DMARC1; p=none' } })
  if (CPU_PROF !== '') {
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --require ${new URL('./mail-cpu-prof.cjs', import.meta.url).pathname}`.trim()
    process.env['ESPRA_BENCH_CPU_PROF'] = CPU_PROF
  }
  const seed = await startSeed()
  const smtpPort = await freePorts()
  const mail = await startRegistered('mail', seed, {
    children: CHILDREN, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    // The bench is one client address sending as fast as it can: the per-address limits would (rightly) stop it.
    'smtp-max-conns-per-address': 0, 'smtp-max-messages-per-minute': 0, 'mail-dns-servers': dns.address,
  })
  const app = NO_APP ? null : await startRegistered('app', seed, { children: 1, threads: 1 })
  if (app) await waitBuild(app, await pushBuild(seed, { 'server/index.js': APP }, 'mail bench'))
  if (CPU_PROF !== '') delete process.env['NODE_OPTIONS'], delete process.env['ESPRA_BENCH_CPU_PROF']
  const groups = { 'mail parent': () => [mail.pid], 'mail children': () => mail.children(), seed: () => [seed.node.pid, ...descendants(seed.node.pid)], ...(app ? { app: () => [app.pid, ...descendants(app.pid)] } : {}) }
  // SIGTERM (a graceful stop) so that --cpu-prof profiles are written; the seed last.
  const stop = async () => {
    for (const node of app ? [mail, app, seed.node] : [mail, seed.node]) {
      try {
        process.kill(node.pid, 'SIGTERM')
      } catch {
        // gone
      }
      for (let i = 0; i < 100 && node.proc.exitCode === null && node.proc.signalCode === null; i++) await sleep(100)
    }
  }
  return { port: smtpPort, pids: () => [mail.pid, ...mail.children()], seedPid: seed.node.pid, stages: () => stageTimes(mail), groups, stop }
}

/**
 * Where the time after the end of DATA went, from each accepted message's log line (`ms`: the stages
 * smtp.ts times): call to start collecting, call the result to stop and get `stage p50/p99` text.
 */
function stageTimes(node: { onLog(fn: (line: Record<string, unknown>) => void): () => void }): () => string {
  const seen = new Map<string, number[]>()
  const stop = node.onLog((line) => {
    const ms = line['ms'] as Record<string, number> | undefined
    if (typeof line['id'] !== 'string' || ms === undefined || typeof ms !== 'object') return
    for (const [stage, v] of Object.entries(ms)) if (typeof v === 'number') (seen.get(stage) ?? seen.set(stage, []).get(stage)!).push(v)
  })
  return () => {
    stop()
    const pct = (v: number[], p: number) => v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] ?? NaN
    return [...seen].map(([stage, v]) => {
      v.sort((a, b) => a - b)
      return `${stage} ${pct(v, 50)}/${pct(v, 99)}`
    }).join(', ')
  }
}

/** Haraka with rcpt_to.in_host_list (example.test) and queue/discard, CHILDREN worker processes; null when it cannot start. */
async function startHaraka(): Promise<{ port: number; pids: () => number[]; version: string } | null> {
  if (HARAKA === '' || !existsSync(join(HARAKA, 'bin', 'haraka'))) return null
  const dir = tempDir('espra-bench-haraka-')
  cpSync(join(HARAKA, 'config'), join(dir, 'config'), { recursive: true })
  const port = await freePorts()
  writeFileSync(join(dir, 'config', 'plugins'), 'rcpt_to.in_host_list\nqueue/discard\n')
  writeFileSync(join(dir, 'config', 'host_list'), 'example.test\n')
  const ini = readFileSync(join(dir, 'config', 'smtp.ini'), 'utf8').split('\n').filter((l) => !/^(listen|nodes)\s*=/.test(l))
  writeFileSync(join(dir, 'config', 'smtp.ini'), [`listen=127.0.0.1:${port}`, `nodes=${CHILDREN}`, ...ini].join('\n'))
  const proc = spawn(process.execPath, [join(HARAKA, 'bin', 'haraka'), '-c', dir], { env: { ...process.env, YES_REALLY_DO_DISCARD: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  adopt(proc)
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)))
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)))
  for (let i = 0; i < 600 && (out.match(/worker \d+ listening/g) ?? []).length < CHILDREN; i++) {
    if (proc.exitCode !== null) break
    await sleep(100)
  }
  if ((out.match(/worker \d+ listening/g) ?? []).length < CHILDREN) {
    console.error(`Haraka did not start:\n${out.slice(-2000)}`)
    return null
  }
  const version = (JSON.parse(readFileSync(join(HARAKA, 'package.json'), 'utf8')) as { version: string }).version
  return { port, pids: () => [proc.pid!, ...descendants(proc.pid!)], version }
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a')

guard(15 * 60_000)
console.log(`load average before: ${load()}`)
const espra = await startEspraMail()
const haraka = await startHaraka()
const results: { who: string; r: Round }[] = []
for (let i = 0; i < ROUNDS; i++) {
  for (const [who, server] of [['espra', espra], ['haraka', haraka]] as const) {
    if (server === null) continue
    await sleep(1000)
    const stages = who === 'espra' ? espra.stages() : null
    const r = await round(server.port, server.pids, who === 'espra' ? espra.groups : { haraka: server.pids })
    results.push({ who, r })
    const seed = who === 'espra' ? ` (+ seed ${fmt(rssKb(espra.seedPid) / 1024)} MB)` : ''
    console.log(`round ${i + 1} ${who} (load ${load()}): ${fmt(r.perSecond)} msg/s, p50 ${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms, ${r.accepted} accepted, ${r.refused} refused${r.firstRefusal ? ` (first: ${r.firstRefusal})` : ''}, RSS ${fmt(r.rssMb)} MB${seed}`)
    if (stages !== null) console.log(`  stages after the end of DATA, ms p50/p99 (node's log): ${stages()}`)
    console.log(`  CPU (100% = one core): ${r.cpu}`)
    console.log(`  CPU per accepted message (ms): ${r.cpuPerMsg}`)
  }
}
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b)
  const mid = v.length / 2
  return v.length % 2 === 1 ? v[Math.floor(mid)]! : (v[mid - 1]! + v[mid]!) / 2
}
console.log(`\n${CLIENTS} clients, ${fmt(SIZE)} byte messages, ${DURATION_S} s rounds × ${ROUNDS}, ${CHILDREN} server processes each${haraka ? `; Haraka ${haraka.version} (queue/discard)` : '; Haraka not run (set HARAKA)'}; medians of the rounds\n`)
console.log('| server | msg/s | p99 end of DATA → 250 | p50 | peak RSS | CPU per message |\n|---|---|---|---|---|---|')
for (const who of ['espra', 'haraka']) {
  const rs = results.filter((x) => x.who === who).map((x) => x.r)
  if (rs.length === 0) continue
  console.log(`| ${who} | ${fmt(median(rs.map((r) => r.perSecond)))} | ${fmt(median(rs.map((r) => r.p99Ms)), 1)} ms | ${fmt(median(rs.map((r) => r.p50Ms)), 1)} ms | ${fmt(median(rs.map((r) => r.rssMb)))} MB | ${fmt(median(rs.map((r) => r.serverCpuMs)), 2)} ms |`)
}
if (CPU_PROF !== '') await espra.stop()
killAll()
process.exit(0)
