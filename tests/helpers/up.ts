/**
 * Starts `espra-node up` in a fresh temp directory on a free block of ports,
 * and always stops it (and everything it started) at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Test } from 'tap'
import { UP_PORT_SPAN } from '../../lib/cli/up-ports.js'
import { freePortsAt } from './ports.js'
import { testDir } from './temp-dir.js'

export const BIN = resolve(import.meta.dirname, '../../dist/bin/espra-node.js')
export { ROLE_NAMES as ROLES } from '../../lib/core/config.js'
import { ROLE_NAMES as ROLES, type RoleName } from '../../lib/core/config.js'

/** A base port B such that the whole range `up --port-base B` takes (B..B+UP_PORT_SPAN-1) is free and claimed (./ports.ts). */
export function freePortBlock(): Promise<number> {
  return freePortsAt([...Array(UP_PORT_SPAN).keys()])
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Direct children of a pid, read from /proc. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** Runs the CLI to completion; resolves with its exit code and output. */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: opts.env ?? process.env })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => (stdout += d))
    p.stderr.on('data', (d) => (stderr += d))
    p.on('close', (code) => done({ code, stdout, stderr }))
  })
}

export interface UpCluster {
  dir: string
  base: number
  proc: ChildProcess
  output: () => string
  port: (role: RoleName) => number
  exited: Promise<number | null>
}

/** `espra-node up` in a temp dir (cwd), `--children 1` unless `defaults` (then up's own defaults). */
export async function startUp(t: Test, extra: string[] = [], opts: { defaults?: boolean } = {}): Promise<UpCluster> {
  const dir = testDir('espra-up-')
  const base = await freePortBlock()
  const proc = spawn(process.execPath, [BIN, 'up', '--port-base', String(base), ...(opts.defaults ? [] : ['--children', '1']), ...extra], {
    cwd: dir,
    env: { ...process.env, ESPRA_SECRET: '' },
  })
  let out = ''
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
  // If the test process itself is killed, `up` goes too (and its nodes follow it).
  const killOnExit = (): void => void proc.kill('SIGKILL')
  process.once('exit', killOnExit)
  void exited.then(() => process.off('exit', killOnExit))
  t.teardown(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGINT')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))])
      if (proc.exitCode === null) proc.kill('SIGKILL')
    }
  })
  // The last line up prints, after the table and the addresses: waiting for `cluster up` raced the lines after it.
  await waitFor('cluster up', () => out.includes('Ctrl-C stops the cluster.') || (proc.exitCode !== null && Promise.reject(new Error(out))), 60_000)
  return { dir, base, proc, output: () => out, port: (role) => base + 1 + ROLES.indexOf(role), exited }
}

/** Every pid under `pid` (itself included), read from /proc. */
export function processTree(pid: number): number[] {
  return [pid, ...childPids(pid).flatMap(processTree)]
}

/** Summed PSS and RSS (bytes) of a process tree, from /proc/<pid>/smaps_rollup. */
export function treeMemory(pid: number): { pss: number; rss: number; processes: number } {
  let pss = 0
  let rss = 0
  const pids = processTree(pid)
  for (const p of pids) {
    try {
      const text = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8')
      pss += Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024
      rss += Number(/^Rss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024
    } catch {
      // gone meanwhile
    }
  }
  return { pss, rss, processes: pids.length }
}

/** TCP ports the processes of a tree listen on (from /proc/net/tcp{,6} and each process's fds). */
export function listeningPorts(pid: number): number[] {
  const byInode = new Map<string, number>()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f[3] === '0A') byInode.set(f[9]!, parseInt(f[1]!.split(':')[1]!, 16))
    }
  }
  const ports = new Set<number>()
  for (const p of processTree(pid)) {
    let fds: string[] = []
    try {
      fds = readdirSync(`/proc/${p}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`))
        if (m && byInode.has(m[1]!)) ports.add(byInode.get(m[1]!)!)
      } catch {
        // closed meanwhile
      }
    }
  }
  return [...ports].sort((a, b) => a - b)
}
