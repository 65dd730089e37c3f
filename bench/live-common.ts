/**
 * Shared by the benches that start nodes (live-*, files, upload, app-*): real
 * `espra-node` processes from dist (run `npx tsc -p tsconfig.json` first),
 * load processes, /proc readings, and a guarantee that everything started is
 * killed when the bench ends, fails or is interrupted. `BENCH_DIST=<dir>`
 * starts the `espra-node` built in another tree instead (`<dir>/bin/espra-node.js`,
 * e.g. main's dist, to compare a change against it with the same bench).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePortsAt } from '../tests/helpers/ports.js'

export const BIN = process.env['BENCH_DIST'] ? join(process.env['BENCH_DIST'], 'bin/espra-node.js') : new URL('../dist/bin/espra-node.js', import.meta.url).pathname
export const LOAD = new URL('./live-load.ts', import.meta.url).pathname
export const BENCH_SECRET = 'bench-live-secret-0123456789abcdef'
/** The internal link listens on the public port plus this (the default). */
const LINK_OFFSET = 2000

const started: ChildProcess[] = []
const dirs: string[] = []

export function killAll(): void {
  for (const p of started) {
    for (const pid of [...descendants(p.pid!), p.pid!]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  started.length = 0
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
}

/** A fresh directory under `under` that {@link killAll} removes (after the processes using it are gone). */
export function tempDir(prefix: string, under: string = tmpdir()): string {
  const dir = mkdtempSync(join(under, prefix))
  dirs.push(dir)
  return dir
}

/** Another process for {@link killAll} to kill (with its descendants). */
export function adopt(p: ChildProcess): void {
  started.push(p)
}

/** Everything started is killed on exit, Ctrl-C, or after `limitMs`. */
export function guard(limitMs: number): NodeJS.Timeout {
  process.on('exit', killAll)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      killAll()
      process.exit(130)
    })
  }
  const timer = setTimeout(() => {
    console.error(`bench exceeded ${limitMs / 1000} s; stopping everything it started`)
    killAll()
    process.exit(2)
  }, limitMs)
  timer.unref()
  return timer
}

/** A base port P with P, P + 1000 (metrics) and P + 2000 (Live link) free and claimed, below the ephemeral range (a node restarted by the bench binds them again later). */
export function freePorts(): Promise<number> {
  return freePortsAt([0, 1000, LINK_OFFSET])
}

export function descendants(pid: number): number[] {
  let kids: number[] = []
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
  return kids.flatMap((k) => [k, ...descendants(k)])
}

export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

/** utime + stime of a process in seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return NaN
  }
}

export function openFilesLimit(): number {
  const m = /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m ? Number(m[1]) : NaN
}

export function pct(hist: Map<number, number>, total: number, p: number, bucketMs: number): number {
  if (total === 0) return NaN
  const want = Math.ceil((p / 100) * total)
  let seen = 0
  for (const b of [...hist.keys()].sort((x, y) => x - y)) {
    seen += hist.get(b)!
    if (seen >= want) return (b + 1) * bucketMs
  }
  return NaN
}


export interface EspraNode {
  readonly role: string
  readonly port: number
  readonly pid: number
  readonly proc: ChildProcess
  /** Pids of the node's children (from /proc). */
  children(): number[]
  /** Resolves with the first log line (parsed JSON) for which `pred` holds, already seen or to come. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Calls `fn` with every log line (parsed JSON) from now on, until the returned function is called. */
  onLog(fn: (line: Record<string, unknown>) => void): () => void
}

/** Spawns `espra-node --role=<role>` and waits for 'node started'. */
export async function startEspra(role: string, port: number, flags: Record<string, string | number>): Promise<EspraNode> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npx tsc -p tsconfig.json first`)
  const dir = tempDir('espra-bench-')
  const all = { bind: '127.0.0.1', advertise: '127.0.0.1', 'data-dir': dir, 'log-level': 'info', ...flags, role, port, 'metrics-port': port + 1000 }
  const proc = spawn(process.execPath, [BIN, ...Object.entries(all).map(([k, v]) => `--${k}=${v}`)], {
    env: { ...process.env, ESPRA_SECRET: BENCH_SECRET },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.push(proc)
  // BENCH_LOG_DIR=<dir>: every node's log lines also go to <dir>/<role>-<port>-<pid>.log (to see what a miss was).
  const logTo = process.env['BENCH_LOG_DIR'] ? createWriteStream(join(process.env['BENCH_LOG_DIR'], `${role}-${port}-${proc.pid}.log`)) : null
  if (logTo) proc.stdout!.pipe(logTo)
  let stderr = ''
  let partial = ''
  const watchers = new Set<(line: Record<string, unknown>) => void>()
  const history: Record<string, unknown>[] = []
  proc.stdout!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n')
    partial = lines.pop()!
    for (const l of lines) {
      let line: Record<string, unknown>
      try {
        line = JSON.parse(l) as Record<string, unknown>
      } catch {
        continue
      }
      if (history.length < 5000) history.push(line)
      for (const w of [...watchers]) w(line)
    }
  })
  const waitForLog = (pred: (line: Record<string, unknown>) => boolean, what: string, timeoutMs = 30_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const seen = history.find(pred)
      if (seen) return resolve(seen)
      const timer = setTimeout(() => {
        watchers.delete(watch)
        reject(new Error(`${role}: no log line "${what}" within ${timeoutMs} ms: ${stderr}`))
      }, timeoutMs)
      const watch = (line: Record<string, unknown>) => {
        if (!pred(line)) return
        clearTimeout(timer)
        watchers.delete(watch)
        resolve(line)
      }
      watchers.add(watch)
    })
  await new Promise<void>((resolve, reject) => {
    waitForLog((l) => l['msg'] === 'node started', 'node started').then(() => resolve(), reject)
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
    proc.once('exit', (code) => reject(new Error(`${role} exited (${code}) before it started: ${stderr}`)))
  })
  const onLog = (fn: (line: Record<string, unknown>) => void) => {
    watchers.add(fn)
    return () => void watchers.delete(fn)
  }
  return { role, port, pid: proc.pid!, proc, children: () => descendants(proc.pid!), waitForLog, onLog }
}

/** A load process (bench/live-load.ts under the same tsx loader as this one). */
export function startLoad(): ChildProcess {
  const p = fork(LOAD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  started.push(p)
  return p
}

/** The next IPC message of `type` from a load process. */
export function nextMessage<T extends { type: string }>(p: ChildProcess, type: T['type']): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T) => {
      if (m.type !== type) return
      p.off('message', onMessage)
      p.off('exit', onExit)
      resolve(m)
    }
    const onExit = (code: number | null) => reject(new Error(`load process exited (${code}) while waiting for ${type}`))
    p.on('message', onMessage)
    p.once('exit', onExit)
  })
}
