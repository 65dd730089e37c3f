/**
 * Ports for servers a test starts in another process (nodes, redis-server,
 * PostgreSQL, `up`). Such a port is chosen here and bound there later, so two
 * things can take it in between:
 * - any outgoing connection on the machine, or any port-0 bind: the kernel
 *   gives those a port from the ephemeral range (a full CI run lost
 *   `proxy/reload.test.ts` that way: its seed's port, picked by binding port 0,
 *   was in use when the seed bound it). Ports here come from below that range.
 * - another test file, run in parallel, choosing the same port: each port is
 *   claimed with a file created exclusively in a directory all test processes
 *   share, released when this process exits (a dead claimer's file is taken over).
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const CLAIMS = join(tmpdir(), 'espra-test-ports')
const LOWEST = 10_000

function ephemeralFrom(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
  } catch {
    return 32_768 // Linux's default
  }
}
const HIGHEST = Math.max(ephemeralFrom(), LOWEST + 1_000) - 1

const claimed: string[] = []
process.once('exit', () => {
  for (const file of claimed) {
    try {
      unlinkSync(file)
    } catch {
      // already gone
    }
  }
})

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** True if this process now holds the claim on `port`. */
function claim(port: number): boolean {
  mkdirSync(CLAIMS, { recursive: true })
  const file = join(CLAIMS, String(port))
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' })
      claimed.push(file)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const holder = Number(readFileSync(file, 'utf8'))
      if (holder === process.pid || (holder > 0 && pidAlive(holder))) return false
      try {
        unlinkSync(file)
      } catch {
        // another process took it over first; the next attempt says whose it is
      }
    }
  }
  return false
}

function bindable(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer()
    s.once('error', () => done(false))
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => done(true)))
  })
}

/** A base port B with B + each offset free right now and claimed for this process. */
export async function freePortsAt(offsets: readonly number[]): Promise<number> {
  const span = Math.max(...offsets) + 1
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST + 2 - span))
    const ports = offsets.map((offset) => base + offset)
    if (!ports.every(claim)) continue
    if ((await Promise.all(ports.map(bindable))).every(Boolean)) return base
  }
  throw new Error(`no free ports at offsets ${offsets.join(', ')} between ${LOWEST} and ${HIGHEST}`)
}

/** A port nobody listens on right now, below the ephemeral range, claimed for this process. */
export function freePort(): Promise<number> {
  return freePortsAt([0])
}
