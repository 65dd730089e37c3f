/**
 * One node of `espra-node up`, kept running the way a process manager
 * would: spawned as its own `espra-node --role=…` process (own process
 * group, log file, IPC channel so it stops when `up` dies), waited on until
 * its health answers 200, and started again with exponential backoff when
 * it dies while the cluster is up. A node that exits with the restart status
 * (a restart order: admin rolling-restart --mode restart) asked for it: it
 * is started again at once, and the backoff is left as it was.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import type { RoleName } from '../core/config.js'
import { RESTART_EXIT_CODE } from '../transport/drain-order.js'

const LOCAL = '127.0.0.1'
const START_TIMEOUT_MS = 30_000
/** First restart after this; doubles up to {@link MAX_BACKOFF_MS}. */
export const FIRST_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 30_000
/** A node that ran this long before dying starts again at the first backoff. */
const STABLE_MS = 60_000

export interface UpNodeOptions {
  readonly role: RoleName
  readonly port: number
  readonly metricsPort: number
  readonly log: string
  /** `espra-node` arguments (after the binary). */
  readonly args: readonly string[]
  /** Printed lines: readiness, deaths, restarts. */
  readonly say: (line: string) => void
  /** The node is running again after a restart (a new pid). */
  readonly onRestarted: () => void
}

export interface UpNode {
  readonly role: RoleName
  readonly port: number
  readonly metricsPort: number
  readonly log: string
  /** The current process's pid. */
  pid(): number
  /** Resolves when the first start is healthy; rejects when it exits or times out first. */
  readonly ready: Promise<void>
  /** Starts restarting the node whenever it dies (after the cluster is up). */
  supervise(): void
  /** SIGTERM (no restart follows); resolves when the process is gone. */
  stop(): Promise<void>
  /** SIGKILL now. */
  kill(): void
}

async function waitHealthy(port: number, exited: () => number | null | undefined, log: string, role: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    const code = exited()
    if (code !== undefined) throw new Error(`${role} exited with code ${code} while starting; see ${log}`)
    try {
      const res = await fetch(`http://${LOCAL}:${port}/_espra/health`, { signal: AbortSignal.timeout(1000) })
      // A node an operator drained (admin drain) answers 503 `draining` once started: it is up, not stuck.
      const body = res.status === 200 ? null : await res.json().catch(() => null) as { health?: unknown } | null
      await res.body?.cancel().catch(() => {})
      if (res.status === 200 || body?.health === 'draining') return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${role} did not become healthy within ${START_TIMEOUT_MS / 1000}s; see ${log}`)
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`

export function startUpNode(opts: UpNodeOptions): UpNode {
  let proc: ChildProcess
  let exitCode: number | null | undefined
  let exitSignal: NodeJS.Signals | null = null
  let exited: Promise<void>
  let startedAt = 0
  let stopping = false
  let supervising = false
  let backoff = FIRST_BACKOFF_MS
  let timer: NodeJS.Timeout | null = null

  function spawnNode(): void {
    const fd = openSync(opts.log, 'a', 0o600)
    // Own process group, so Ctrl-C reaches only `up`, which stops the nodes in order.
    proc = spawn(process.execPath, [...process.execArgv, ...opts.args], { stdio: ['ignore', fd, fd, 'ipc'], detached: true, env: { ...process.env, ESPRA_UP: '1' } })
    closeSync(fd)
    startedAt = Date.now()
    exitCode = undefined
    exitSignal = null
    const current = proc
    exited = new Promise((resolve) => current.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? 128 : null)
      exitSignal = signal
      resolve()
      onExit(current)
    }))
  }

  function onExit(which: ChildProcess): void {
    if (stopping || !supervising || which !== proc) return
    const ran = Date.now() - startedAt
    if (ran >= STABLE_MS) backoff = FIRST_BACKOFF_MS
    let wait = backoff
    if (exitSignal === null && exitCode === RESTART_EXIT_CODE) {
      wait = 0
      opts.say(`${opts.role} node (pid ${which.pid}) stopped for a restart (exit ${RESTART_EXIT_CODE}, a restart order) after ${seconds(ran)}; starting it again`)
    } else {
      const how = exitSignal ? `was killed (${exitSignal})` : `exited with code ${exitCode}`
      opts.say(`${opts.role} node (pid ${which.pid}) ${how} after ${seconds(ran)}; restarting in ${seconds(backoff)} (log: ${opts.log})`)
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
    }
    timer = setTimeout(() => {
      timer = null
      if (stopping) return
      spawnNode()
      opts.onRestarted()
      const started = Date.now()
      waitHealthy(opts.port, () => exitCode, opts.log, opts.role).then(
        () => opts.say(`${opts.role.padEnd(10)} ready again on http://${LOCAL}:${opts.port} (pid ${proc.pid}, ${seconds(Date.now() - started)})`),
        () => {
          // It died while starting (onExit schedules the next try) or hangs: stop it and try again.
          if (exitCode === undefined && !stopping) proc.kill('SIGKILL')
        },
      )
    }, wait)
  }

  spawnNode()
  const started = Date.now()
  const ready = waitHealthy(opts.port, () => exitCode, opts.log, opts.role).then(() =>
    opts.say(`${opts.role.padEnd(10)} ready on http://${LOCAL}:${opts.port} (pid ${proc.pid}, ${seconds(Date.now() - started)})`))

  return {
    role: opts.role,
    port: opts.port,
    metricsPort: opts.metricsPort,
    log: opts.log,
    pid: () => proc.pid!,
    ready,
    supervise: () => void (supervising = true),
    async stop() {
      stopping = true
      if (timer !== null) clearTimeout(timer)
      if (exitCode === undefined) proc.kill('SIGTERM')
      await exited
    },
    kill() {
      stopping = true
      if (timer !== null) clearTimeout(timer)
      proc.kill('SIGKILL')
    },
  }
}
