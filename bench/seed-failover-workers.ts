/**
 * Load processes for bench/seed-failover.ts (not run directly): a slice of
 * the simulated nodes as real meta clients given every seed's address, that
 * register on every (re)connect and heartbeat at 1 Hz (spread over the
 * second). They report when each node registered again after the kill.
 */
import { createLogger } from '../lib/core/log.js'
import { createMetaClient, type MetaClient } from '../lib/transport/meta-client.js'
import type { HeartbeatBody, NodeInfo } from '../lib/transport/meta-shapes.js'

export const FAILOVER_SECRET = 'bench-failover-secret-0123456789'
export const FAILOVER_REGION = 'bench-1'

export type ToFailoverLoad = { type: 'start'; seeds: string[]; ids: string[]; concurrency: number } | { type: 'report'; since: number }
export type FromFailoverLoad =
  | { type: 'ready'; registered: number; failed: number }
  | { type: 'report'; reRegisteredAt: (number | null)[] }

const HEARTBEAT: HeartbeatBody = { health: 'ok', children: 2, build: null, load: { connections: 10, rps: 5, rssBytes: 50_000_000, lagMs: 1 } }

interface Sim {
  client: MetaClient
  registrations: number[]
}

function runLoad(): void {
  const log = createLogger('silent', { role: 'bench', node: 'load' })
  const sims: Sim[] = []
  async function start(seeds: string[], ids: string[], concurrency: number): Promise<void> {
    let next = 0
    let failed = 0
    const startedAt = Date.now()
    async function lane(): Promise<void> {
      while (next < ids.length) {
        const i = next++
        const id = ids[i]!
        const info: NodeInfo = {
          id, role: i % 20 === 0 ? 'live' : 'app', region: FAILOVER_REGION, address: '127.0.0.1', port: 20_000 + i, metricsPort: 0,
          pid: process.pid, version: '0.1.0', children: 2, childrenWanted: 2, build: null, health: 'ok', startedAt,
        }
        const sim: Sim = { client: null as unknown as MetaClient, registrations: [] }
        sim.client = createMetaClient({
          seeds, secret: FAILOVER_SECRET, peer: { kind: 'node', id }, maxFrame: 1024 * 1024, log, reconnect: true,
          onConnect: async (link) => {
            await link.request('register', info)
            sim.registrations.push(Date.now())
          },
        })
        try {
          await sim.client.ready
          sims.push(sim)
        } catch {
          failed++
        }
      }
    }
    let tick = 0
    setInterval(() => {
      for (let i = tick++ % 50; i < sims.length; i += 50) if (sims[i]!.client.connected) sims[i]!.client.send('heartbeat', HEARTBEAT)
    }, 20)
    await Promise.all([...Array(concurrency).keys()].map(lane))
    process.send!({ type: 'ready', registered: sims.length, failed } satisfies FromFailoverLoad)
  }
  process.on('message', (m: ToFailoverLoad) => {
    if (m.type === 'start') void start(m.seeds, m.ids, m.concurrency)
    else process.send!({ type: 'report', reRegisteredAt: sims.map((s) => s.registrations.find((at) => at >= m.since) ?? null) } satisfies FromFailoverLoad)
  })
  process.on('disconnect', () => process.exit(0))
}

if (process.argv[2] === 'load') runLoad()
