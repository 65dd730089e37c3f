/**
 * Starts real `espra-node` processes (from dist: build first) on fresh ports,
 * collects their JSON log lines, and always kills them and their children at
 * teardown. With coverage on, teardown stops them with SIGTERM first, so
 * their coverage counts (see {@link COVERAGE}).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import type { Agent } from 'node:http'
import type { Test } from 'tap'
import { send, type HttpAnswer } from './http.js'
import { freePort, freePortsAt } from './ports.js'
import { SECRET } from './meta.js'
import { BIN, pidAlive, waitFor } from './up.js'
import { testDir } from './temp-dir.js'

export { freePort }

export { pidAlive, SECRET, waitFor, type HttpAnswer }

/**
 * Whether tap collects coverage in this run. Its processinfo module reaches
 * every node started here, and their children, through NODE_OPTIONS, and
 * writes a process's coverage (of dist/, mapped back to the .ts sources by
 * the source maps) to .tap/coverage when that process exits: a node killed
 * with SIGKILL leaves none. So with coverage on, teardown stops a node the
 * test left running with SIGTERM (in reverse order of starting, as tap runs
 * teardowns) and SIGKILLs it and its children if it is still there after
 * COVERAGE_STOP_MS; with coverage off (`--disable-coverage`) teardown
 * SIGKILLs at once, as before.
 */
const COVERAGE = process.env['_TAPJS_PROCESSINFO_COVERAGE_'] === '1'
const COVERAGE_STOP_MS = 5_000

export interface LogLine {
  level: string
  msg: string
  pid: number
  child?: number
  childPid?: number
  [key: string]: unknown
}

export interface StartedNode {
  readonly proc: ChildProcess
  readonly port: number
  readonly metricsPort: number
  readonly logs: LogLine[]
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  waitForLog(pred: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>
  /** Pids of children that reported listening and have not exited. */
  childPids(): number[]
  /** SIGTERM, then SIGKILL (parent and every child seen) if it does not exit in time. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface StartOptions {
  /** Resolve at once instead of waiting for 'node started'. */
  noWait?: boolean
}

/**
 * Spawns `espra-node --role=<role>` with fresh public and metrics ports. Flags
 * are `--key=value`; `seed` defaults to an address nobody listens on.
 */
export async function startNode(t: Test, role: string, flags: Record<string, string | number> = {}, opts: StartOptions = {}): Promise<StartedNode> {
  // A Live node also listens on its port plus --live-link-offset (2000 by default): claimed with it.
  const linkOffset = role === 'live' ? [Number(flags['live-link-offset'] ?? 2000)] : []
  const port = Number(flags['port'] ?? (await freePortsAt([0, ...linkOffset])))
  const metricsPort = Number(flags['metrics-port'] ?? (await freePort()))
  // A data directory of its own unless the test gives one; removed once the node has exited at teardown.
  const ownDataDir = flags['data-dir'] === undefined ? testDir('espra-node-test-') : null
  const all: Record<string, string | number> = {
    seed: `127.0.0.1:${await freePort()}`,
    ...(ownDataDir !== null ? { 'data-dir': ownDataDir } : {}),
    bind: '127.0.0.1',
    advertise: '127.0.0.1',
    ...flags,
    role,
    port,
    'metrics-port': metricsPort,
  }
  const args = [BIN, ...Object.entries(all).map(([k, v]) => `--${k}=${v}`)]
  // With ESPRA_UP and an IPC channel the node stops when this test process goes away, even if a
  // timeout kills it before its teardowns run (lib/cli/run-node.ts); unref'd, the channel keeps nothing alive.
  const proc = spawn(process.execPath, args, { env: { ...process.env, ESPRA_SECRET: SECRET, ESPRA_UP: '1' }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  proc.channel?.unref()
  const logs: LogLine[] = []
  let stderr = ''
  let partial = ''
  proc.stdout!.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8')
    const lines = text.split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine)
      } catch {
        stderr += `${line}\n`
      }
    }
  })
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))

  const seenChildren = (): Set<number> => new Set(logs.flatMap((l) => (typeof l.childPid === 'number' ? [l.childPid] : [])))
  const killAll = (): void => {
    for (const pid of [proc.pid!, ...seenChildren()]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  const node: StartedNode = {
    proc, port, metricsPort, logs, exited,
    stderr: () => stderr,
    waitForLog: (pred, what, timeoutMs = 15_000) => waitFor(`log: ${what}`, () => logs.find(pred), timeoutMs),
    childPids() {
      const gone = new Set(logs.filter((l) => /^child \d+ (exited|crashed)$/.test(l.msg)).map((l) => l.childPid))
      return logs.filter((l) => /^child \d+ listening$/.test(l.msg) && !gone.has(l.childPid)).map((l) => l.childPid!)
    },
    async stop(timeoutMs = 20_000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      const timer = setTimeout(killAll, timeoutMs)
      const result = await exited
      clearTimeout(timer)
      return result
    },
  }
  t.teardown(async () => {
    if (COVERAGE) await node.stop(COVERAGE_STOP_MS)
    killAll()
    if (ownDataDir === null) return
    void exited.then(() => rmSync(ownDataDir, { recursive: true, force: true }))
  })
  if (!opts.noWait) {
    await Promise.race([
      // A liveness bound, not a speed check: a fileserver under coverage on this 2-core machine at load average 17
      // took over 20 s to start (two files failed on it in one suite run); an exit fails at once below.
      node.waitForLog((l) => l.msg === 'node started', `${role} started`, 45_000),
      exited.then(({ code }) => {
        throw new Error(`${role} exited (code ${code}) before it started: ${stderr}`)
      }),
    ])
  }
  return node
}

/** One GET over node:http; `agent` false opens a fresh connection. */
export function get(port: number, path: string, agent: Agent | false = false, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return send({ host: '127.0.0.1', port, path, agent, headers })
}

/** The parsed health answer of a node. */
export async function health(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await get(port, '/_espra/health')
  return { status: answer.status, body: JSON.parse(answer.body) as Record<string, unknown> }
}

/**
 * Two real seed processes on one database (`flags` carries `datastore` and the timings): the first leads, the second
 * follows. Each names only itself in `--seed`, and each meta port is picked just before its seed starts, so a port an
 * earlier start picked cannot be taken meanwhile.
 */
export async function startSeedPair(t: Test, flags: Record<string, string | number>, ids: readonly [string, string] = ['seed-0', 'seed-1']): Promise<{ seeds: [StartedNode, StartedNode]; addresses: [string, string] }> {
  const start = async (id: string, log: string): Promise<[StartedNode, string]> => {
    const port = await freePort()
    const address = `127.0.0.1:${port}`
    const seed = await startNode(t, 'seed', { ...flags, 'node-id': id, 'meta-port': port, seed: address })
    await seed.waitForLog((l) => l.msg === log, `${id}: ${log}`)
    return [seed, address]
  }
  const [leader, leaderAddress] = await start(ids[0], 'seed leads the cluster')
  const [follower, followerAddress] = await start(ids[1], 'seed follows the leader')
  return { seeds: [leader, follower], addresses: [leaderAddress, followerAddress] }
}
