/**
 * A real seed, one real Live node and one real proxy (all `espra-node`
 * processes from dist), the proxy serving the live host `us-1.live.localhost`
 * and holding a routing table that lists the Live node. Channels matching
 * `pub:*` are public (anyone may subscribe); publishing needs a token.
 * Everything is stopped at teardown.
 */
import type { Test } from 'tap'
import { freePort, health, startNode, waitFor, type StartedNode } from './cluster.js'

export const LIVE_HOST = 'us-1.live.localhost'
export const PUBLIC_PATTERN = 'pub:*'

export interface LiveBehindProxy {
  seed: StartedNode
  /** The seed's meta address (`--seed` for the admin CLI). */
  seedAddress: string
  live: StartedNode
  proxy: StartedNode
}

export async function liveBehindProxy(t: Test, liveFlags: Record<string, string | number> = {}): Promise<LiveBehindProxy> {
  const metaPort = await freePort()
  const common = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s' }
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...common, 'seed-grace': '0' })
  const live = await startNode(t, 'live', { ...common, 'node-id': 'live-a', children: 1, 'live-public': PUBLIC_PATTERN, ...liveFlags })
  const proxy = await startNode(t, 'proxy', { ...common, children: 1, 'live-domain': 'localhost' })
  t.teardown(async () => {
    await proxy.stop()
    await live.stop()
    await seed.stop()
  })
  await live.waitForLog((l) => l.msg === 'live: routing table applied' && l['listed'] === true, 'live node listed')
  await waitFor('the proxy routes to live-a', async () => {
    const routing = (await health(proxy.port)).body['routing'] as { nodes: { id: string }[] } | undefined
    return routing?.nodes.some((n) => n.id === 'live-a') ?? false
  })
  return { seed, seedAddress: common.seed, live, proxy }
}
