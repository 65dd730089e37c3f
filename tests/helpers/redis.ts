/**
 * A real redis-server (Debian's package; `.ci/run` installs it) on a free
 * loopback port, without persistence, killed at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'
import { freePort } from './cluster.js'
import { waitFor } from './up.js'

export interface TestRedis {
  readonly url: string
  readonly port: number
  /** Kills the server (SIGKILL: an outage, not a shutdown); resolves once it is gone. */
  stop(): Promise<void>
  /** Starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>
}

export async function startRedis(t: Test): Promise<TestRedis> {
  const port = await freePort()
  let current = await spawnRedis(t, port)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      const exited = new Promise((resolve) => current.once('exit', resolve))
      current.kill('SIGKILL')
      await exited
    },
    async restart() {
      current = await spawnRedis(t, port)
    },
  }
}

async function spawnRedis(t: Test, port: number): Promise<ChildProcess> {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let failed: Error | null = null
  proc.on('error', (err) => (failed = new Error(`cannot start redis-server (apt-get install redis-server): ${err.message}`)))
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const kill = (): void => void proc.kill('SIGKILL')
  t.teardown(kill)
  // Also when the test process ends without its teardowns (a timed-out run): no redis-server is left behind.
  process.once('exit', kill)
  await waitFor('redis-server ready', () => {
    if (failed) throw failed
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`)
    return out.includes('Ready to accept connections')
  }, 10_000)
  return proc
}
