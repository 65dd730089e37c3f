// A seed restarted under a running cluster: every node re-registers, nobody is
// evicted while the registry rebuilds, and the proxy never loses its Live node.
import t from 'tap'
import { freePort, health, startNode, waitFor } from '../helpers/cluster.js'
import { watcher } from '../helpers/seed.js'
import type { NodeView, RoutingTable } from '../../lib/transport/meta-shapes.js'

t.test('seed restart: every node re-registers and nobody is evicted', async (t) => {
  const metaPort = await freePort()
  const seedFlags = { 'meta-port': metaPort, port: await freePort(), 'metrics-port': await freePort(), 'seed-grace': '4s' }
  const seedAddr = `127.0.0.1:${metaPort}`
  let seed = await startNode(t, 'seed', seedFlags)
  const live = await startNode(t, 'live', { seed: seedAddr, children: 1 })
  const proxy = await startNode(t, 'proxy', { seed: seedAddr, children: 1 })
  const app = await startNode(t, 'app', { seed: seedAddr, children: 1 })

  const routesLive = async () => {
    const h = await health(proxy.port)
    return ((h.body['routing'] as RoutingTable | null)?.nodes ?? []).length === 1
  }
  await waitFor('proxy routes to the live node', routesLive)

  // Sample the proxy's table all along: it must never lose the live node.
  let lostRoute = false
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      if (!(await routesLive().catch(() => false))) lostRoute = true
      await new Promise((r) => setTimeout(r, 100))
    }
  })()

  seed.proc.kill('SIGKILL')
  await seed.exited
  await new Promise((r) => setTimeout(r, 1000))
  for (const n of [live, proxy, app]) t.equal((await health(n.port)).status, 200, 'nodes keep serving without a seed')
  t.equal((await health(proxy.port)).body['seedConnected'], false, 'proxy knows the seed is gone')

  seed = await startNode(t, 'seed', seedFlags)
  const watch = await watcher(t, metaPort, { events: true })
  const nodes = await waitFor('all four nodes registered again', async () => {
    const list = await watch.client.request<NodeView[]>('nodes', {})
    return list.length === 4 && list.every((n) => n.health === 'ok') && list
  }, 10_000)
  t.same(nodes.map((n) => n.role).sort(), ['app', 'live', 'proxy', 'seed'])

  // Stay through the end of the grace and a heartbeat timeout beyond it.
  await new Promise((r) => setTimeout(r, 4000 + 3500))
  sampling = false
  await sampler
  t.same(watch.events.filter((e) => e.type === 'left'), [], 'nobody left')
  t.equal(((await watch.client.request<NodeView[]>('nodes', {})) as NodeView[]).length, 4)
  t.notOk(lostRoute, 'the proxy kept routing to the live node throughout')
  t.equal((await health(proxy.port)).body['seedConnected'], true)
})
