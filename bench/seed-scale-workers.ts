/**
 * Child processes for bench/seed-scale.ts (not run directly):
 *   seed  runs startSeed on a loopback port and answers `stats` over IPC;
 *   load  simulates a slice of the nodes: real meta clients that register,
 *         heartbeat at 1 Hz (spread over the second) and die when told.
 */
import { loadConfig } from '../lib/core/config.js'
import { createLogger } from '../lib/core/log.js'
import { createMetaClient, type MetaClient } from '../lib/transport/meta-client.js'
import type { HeartbeatBody, NodeInfo } from '../lib/transport/meta-shapes.js'
import { startSeed } from '../seed/seed.js'

export const BENCH_SECRET = 'bench-cluster-secret-0123456789'
export const BENCH_REGION = 'bench-1'

export interface SimNode {
  id: string
  live: boolean
  port: number
}

export type ToLoad = { type: 'start'; seedPort: number; nodes: SimNode[]; concurrency: number } | { type: 'kill'; silent: string[]; destroy: string[] }
export type FromLoad =
  | { type: 'ready'; registered: number; failed: number; errors: string[] }
  | { type: 'killed'; deaths: { id: string; lastHeartbeatAt: number; mode: 'silent' | 'destroy' }[] }

const send = (message: unknown) => process.send!(message)

async function runSeed(): Promise<void> {
  const base = loadConfig({ flags: { role: 'seed', nodeId: 'bench-seed', seedGrace: '0' }, env: { ESPRA_SECRET: BENCH_SECRET } })
  const config = Object.freeze({ ...base, metaPort: 0, bind: '127.0.0.1' })
  const seed = await startSeed({ config, log: createLogger('error', { role: 'seed', node: 'bench-seed' }) })
  send({ type: 'listening', port: seed.port })
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stats') send({ type: 'stats', nodes: seed.registry.size, rss: process.memoryUsage().rss })
  })
  process.on('disconnect', () => process.exit(0))
}

// One shared heartbeat body: the bench should cost the seed, not itself.
const HEARTBEAT: HeartbeatBody = { health: 'ok', children: 2, build: 'b1', load: { connections: 10, rps: 5, rssBytes: 50_000_000, lagMs: 1 } }

interface Sim {
  node: SimNode
  client: MetaClient
  beating: boolean
  lastHeartbeatAt: number
}

async function runLoad(): Promise<void> {
  const log = createLogger('silent', { role: 'bench', node: 'load' })
  const sims = new Map<string, Sim>()
  const order: Sim[] = []

  async function start(seedPort: number, nodes: SimNode[], concurrency: number): Promise<void> {
    const errors: string[] = []
    let next = 0
    let failed = 0
    const startedAt = Date.now()
    async function lane(): Promise<void> {
      while (next < nodes.length) {
        const node = nodes[next++]!
        const info: NodeInfo = {
          id: node.id, role: node.live ? 'live' : 'app', region: BENCH_REGION, address: '127.0.0.1', port: node.port, metricsPort: 0,
          pid: process.pid, version: '0.1.0', children: 2, childrenWanted: 2, build: 'b1', health: 'ok', startedAt,
        }
        const client = createMetaClient({
          seeds: [`127.0.0.1:${seedPort}`], secret: BENCH_SECRET, peer: { kind: 'node', id: node.id }, maxFrame: 1024 * 1024, log,
          reconnect: false, onConnect: async (link) => void (await link.request('register', info)),
        })
        try {
          await client.ready
          const sim: Sim = { node, client, beating: true, lastHeartbeatAt: Date.now() }
          sims.set(node.id, sim)
          order.push(sim)
        } catch (err) {
          failed++
          if (errors.length < 5) errors.push((err as Error).message)
        }
      }
    }
    // 50 slots of 20 ms: each node heartbeats once a second, spread evenly over the second,
    // from the moment it registered (a ramp can last longer than the heartbeat timeout).
    let tick = 0
    setInterval(() => {
      const now = Date.now()
      for (let i = tick++ % 50; i < order.length; i += 50) {
        const sim = order[i]!
        if (sim.beating && sim.client.connected) {
          sim.client.send('heartbeat', HEARTBEAT)
          sim.lastHeartbeatAt = now
        }
      }
    }, 20)
    await Promise.all([...Array(concurrency).keys()].map(lane))
    send({ type: 'ready', registered: order.length, failed, errors } satisfies FromLoad)
  }

  function kill(silent: string[], destroy: string[]): void {
    const deaths: Extract<FromLoad, { type: 'killed' }>['deaths'] = []
    for (const [ids, mode] of [[silent, 'silent'], [destroy, 'destroy']] as const) {
      for (const id of ids) {
        const sim = sims.get(id)
        if (!sim) continue
        sim.beating = false
        // A silent node keeps its socket open (a hung host); a destroyed one closes it.
        if (mode === 'destroy') sim.client.destroy()
        deaths.push({ id, lastHeartbeatAt: sim.lastHeartbeatAt, mode })
      }
    }
    send({ type: 'killed', deaths } satisfies FromLoad)
  }

  process.on('message', (m: ToLoad) => {
    if (m.type === 'start') void start(m.seedPort, m.nodes, m.concurrency)
    else if (m.type === 'kill') kill(m.silent, m.destroy)
  })
  process.on('disconnect', () => process.exit(0))
}

if (process.argv[2] === 'seed') void runSeed()
else if (process.argv[2] === 'load') void runLoad()
