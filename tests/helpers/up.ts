/**
 * Starts `espra-node up` in a fresh temp directory on a free block of ports,
 * and always stops it (and everything it started) at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'

export const BIN = resolve(import.meta.dirname, '../../dist/bin/espra-node.js')
export { ROLE_NAMES as ROLES } from '../../lib/core/config.js'
import { ROLE_NAMES as ROLES, type RoleName } from '../../lib/core/config.js'

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer()
    s.once('error', () => done(false))
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => done(true)))
  })
}

/** A base port B such that B..B+7 and B+1001..B+1007 are all free. */
export async function freePortBlock(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000)
    const ports = [...Array(8).keys()].flatMap((i) => (i === 0 ? [base] : [base + i, base + i + 1000]))
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base
  }
  throw new Error('no free port block found')
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

/** `espra-node up` in a temp dir (cwd), 1 child per node unless told otherwise. */
export async function startUp(t: Test, extra: string[] = []): Promise<UpCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'espra-up-'))
  const base = await freePortBlock()
  const proc = spawn(process.execPath, [BIN, 'up', '--port-base', String(base), '--children', '1', ...extra], {
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
  await waitFor('cluster up', () => out.includes('cluster up') || (proc.exitCode !== null && Promise.reject(new Error(out))), 60_000)
  return { dir, base, proc, output: () => out, port: (role) => base + 1 + ROLES.indexOf(role), exited }
}
