/**
 * wrk from a bench: one run parsed into figures, and several targets measured
 * in alternating rounds (a burst of load from other sessions hits both sides,
 * not one), with the best and the median round of each. wrk runs as a child
 * process without blocking this one, so meta clients here keep heartbeating.
 */
import { spawn, spawnSync } from 'node:child_process'
import { cpuSeconds } from './live-common.js'

/** Throws naming the apt package when a tool is missing. */
export function requireTools(...tools: string[]): void {
  for (const tool of tools) {
    if (spawnSync('which', [tool]).status !== 0) throw new Error(`${tool} is not installed (apt-get install -y ${tool})`)
  }
}

/** The load averages (1, 5, 15 min) as `uptime` prints them: the machine is shared, figures depend on it. */
export function loadAverage(): string {
  return /load average: (.*)$/.exec(spawnSync('uptime').stdout.toString().trim())?.[1] ?? '?'
}

export interface WrkOptions {
  readonly threads: number
  readonly connections: number
  readonly durationS: number
  readonly headers?: Readonly<Record<string, string>>
  /** A wrk Lua script (`-s`). */
  readonly lua?: string
}

export interface WrkFigures {
  readonly rps: number
  /** Response bytes per second, MB (10^6). */
  readonly mbPerS: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Socket errors and non-2xx/3xx answers, as wrk words them; empty when none. */
  readonly errors: string
  readonly stdout: string
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim())
  if (!m) return NaN
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1)
}

function toMb(v: string): number {
  const m = /^([\d.]+)([KMG]?)B$/.exec(v.trim())
  if (!m) return NaN
  return (Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G']) / 1e6
}

/** One wrk run (keep-alive, `--latency`) against `url`. */
export async function wrk(url: string, opts: WrkOptions): Promise<WrkFigures> {
  const headers = Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`])
  const lua = opts.lua === undefined ? [] : ['-s', opts.lua]
  const p = spawn('wrk', [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.durationS}s`, '--latency', ...lua, ...headers, url])
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d) => (stdout += d))
  p.stderr.on('data', (d) => (stderr += d))
  const code = await new Promise<number | null>((resolve) => p.on('close', resolve))
  if (code !== 0) throw new Error(`wrk failed: ${stderr}`)
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]),
    mbPerS: toMb(/Transfer\/sec:\s+(\S+)/.exec(stdout)?.[1] ?? ''),
    p50Ms: toMs(/\s50%\s+(\S+)/.exec(stdout)?.[1] ?? ''),
    p99Ms: toMs(/\s99%\s+(\S+)/.exec(stdout)?.[1] ?? ''),
    errors: [/Socket errors:.*/.exec(stdout)?.[0], /Non-2xx or 3xx responses: \d+/.exec(stdout)?.[0]].filter(Boolean).join('; '),
    stdout,
  }
}

export interface Target {
  readonly name: string
  readonly url: string
  readonly headers?: Readonly<Record<string, string>>
  /** The server's processes: their CPU time during the run is printed (a share of the 2 cores wrk also uses). */
  readonly pids: () => number[]
}

export interface Measured extends WrkFigures {
  /** Server CPU during the run, in cores (1.0 = one core busy the whole run). */
  readonly cores: number
}

/** Measures one target: wrk plus the server's CPU time over the run. */
export async function measure(target: Target, opts: WrkOptions): Promise<Measured> {
  const pids = target.pids()
  const cpu = () => pids.map(cpuSeconds).reduce((a, b) => a + b, 0)
  const before = cpu()
  const started = performance.now()
  const figures = await wrk(target.url, { ...opts, headers: { ...opts.headers, ...target.headers } })
  return { ...figures, cores: (cpu() - before) / ((performance.now() - started) / 1000) }
}

export function formatMeasured(name: string, m: Measured): string {
  return `${name.padEnd(28)} ${m.rps.toFixed(0).padStart(8)} req/s ${m.mbPerS.toFixed(0).padStart(6)} MB/s  p50 ${m.p50Ms.toFixed(2).padStart(6)} ms  p99 ${m.p99Ms.toFixed(2).padStart(7)} ms  server ${m.cores.toFixed(2)} cores${m.errors ? `  (${m.errors})` : ''}`
}

export interface Rounds {
  /** Each target's round with the most req/s. */
  readonly best: Map<string, Measured>
  /** Each target's middle round by req/s (the lower middle of an even count): the figure a burst of other load moves least. */
  readonly median: Map<string, Measured>
}

/**
 * Every target once per round for `rounds` rounds, the order turned by one
 * each round (A B, then B A): no side always runs first on a cold machine or
 * right after the other. Prints each run (and hands it to `afterRun`).
 */
export async function measureRounds(targets: readonly Target[], rounds: number, opts: WrkOptions, afterRun?: (m: Measured) => void): Promise<Rounds> {
  const runs = new Map<string, Measured[]>(targets.map((t) => [t.name, []]))
  for (let round = 1; round <= rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + round - 1) % targets.length]!
      const m = await measure(target, opts)
      console.log(`  round ${round} ${formatMeasured(target.name, m)}`)
      afterRun?.(m)
      runs.get(target.name)!.push(m)
    }
  }
  const best = new Map<string, Measured>()
  const median = new Map<string, Measured>()
  for (const [name, measured] of runs) {
    const byRps = [...measured].sort((a, b) => a.rps - b.rps)
    best.set(name, byRps[byRps.length - 1]!)
    median.set(name, byRps[Math.floor((byRps.length - 1) / 2)]!)
  }
  return { best, median }
}

/** `measureRounds`, keeping only each target's best round. */
export async function bestOfRounds(targets: readonly Target[], rounds: number, opts: WrkOptions): Promise<Map<string, Measured>> {
  return (await measureRounds(targets, rounds, opts)).best
}
