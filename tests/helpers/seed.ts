/**
 * Starts a real seed on a free loopback port and real meta clients against
 * it; everything started is closed at teardown.
 */
import type { Test } from 'tap'
import type { NodeConfig } from '../../lib/core/config.js'
import { createMetaClient, type MetaClient, type MetaClientOptions } from '../../lib/transport/meta-client.js'
import type { LivePeer, NodeEvent, NodeInfo, RoutingTable } from '../../lib/transport/meta-shapes.js'
import { startSeed, type SeedHandle, type SeedOptions } from '../../seed/seed.js'
import { captureLog, heartbeat, nodeInfo, SECRET, seedConfig, type LogLine } from './meta.js'

export interface TestSeed {
  seed: SeedHandle
  port: number
  lines: LogLine[]
  config: NodeConfig
}

export async function startTestSeed(
  t: Test,
  config: Partial<Record<keyof NodeConfig, unknown>> = {},
  meta: SeedOptions['meta'] = {},
): Promise<TestSeed> {
  const { log, lines } = captureLog('debug')
  const cfg = seedConfig({ seedGrace: 0, ...config })
  const seed = await startSeed({ config: cfg, log, meta })
  t.teardown(() => seed.destroy())
  return { seed, port: seed.port, lines, config: cfg }
}

export function client(t: Test, port: number | number[], opts: Partial<MetaClientOptions> = {}): MetaClient {
  const ports = Array.isArray(port) ? port : [port]
  const c = createMetaClient({
    seeds: ports.map((p) => `127.0.0.1:${p}`), secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024,
    log: captureLog('silent').log, reconnect: false, ...opts,
  })
  t.teardown(() => c.destroy())
  return c
}

/** A node peer that registers on connect and heartbeats every `everyMs` until stopped. */
export async function nodeClient(
  t: Test,
  port: number,
  id: string,
  info: Partial<NodeInfo> = {},
  opts: Partial<MetaClientOptions> & { everyMs?: number } = {},
): Promise<MetaClient & { stopHeartbeat(): void; setHealth(health: NodeInfo['health'], children?: number): void; setLivePeers(peers: LivePeer[] | undefined, lost?: string[]): void }> {
  const state = { health: info.health ?? ('ok' as NodeInfo['health']), children: info.children ?? 1, livePeers: info.livePeers, livePeersLost: undefined as string[] | undefined }
  const c = client(t, port, {
    peer: { kind: 'node', id },
    onConnect: async (link) => void (await link.request('register', nodeInfo(id, { ...info, health: state.health }))),
    ...opts,
  })
  const timer = setInterval(() => c.send('heartbeat', { ...heartbeat(state.health, state.children), ...(state.livePeers ? { livePeers: state.livePeers } : {}), ...(state.livePeersLost ? { livePeersLost: state.livePeersLost } : {}) }), opts.everyMs ?? 50)
  t.teardown(() => clearInterval(timer))
  await c.ready
  return Object.assign(c, {
    stopHeartbeat: () => clearInterval(timer),
    setHealth: (health: NodeInfo['health'], children = state.children) => void Object.assign(state, { health, children }),
    setLivePeers: (livePeers: LivePeer[] | undefined, lost?: string[]) => void Object.assign(state, { livePeers, livePeersLost: lost }),
  })
}

/** An admin peer that records every pushed event and routing table. */
export async function watcher(t: Test, port: number, subscribe: { events?: boolean; routing?: string }) {
  const events: NodeEvent[] = []
  const tables: RoutingTable[] = []
  const c = client(t, port, {
    onPush: (op, body) => {
      if (op === 'event') events.push(body as NodeEvent)
      if (op === 'routing') tables.push(body as RoutingTable)
    },
    onConnect: async (link) => void (await link.request('subscribe', subscribe)),
  })
  await c.ready
  return { client: c, events, tables }
}
