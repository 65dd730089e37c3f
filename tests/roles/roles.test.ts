// Every non-seed role boots for real: parent, children, health, metrics, and plain "not built yet" lines.
import t from 'tap'
import { loadRoles } from '../../roles/registry.js'
import { freePort, get, health, startNode, waitFor } from '../helpers/cluster.js'

const ROLES = await loadRoles()

for (const name of ['proxy', 'live', 'fileserver', 'app', 'mail', 'admin'] as const) {
  t.test(`${name} boots, answers health and 404, logs what is not built yet`, async (t) => {
    const role = ROLES[name]
    t.equal(role.name, name)
    t.equal(role.forks, true)

    const node = await startNode(t, name, { children: 1 })
    const h = await health(node.port)
    t.equal(h.status, 200)
    t.match(h.body, { ok: true, health: 'ok', role: name, region: 'us-1', build: null, seedConnected: false, draining: false, children: { alive: 1, wanted: 1 } })
    t.type(h.body['version'], 'string')
    t.type(h.body['uptime'], 'number')

    const missing = await get(node.port, '/no/such/path')
    // The app hands every path to the application; before a build it has none to ask.
    const expected = name === 'app' ? { status: 503, code: 'ESPRA_ERR_APP_NO_BUILD' } : { status: 404, code: 'ESPRA_ERR_HTTP_NOT_FOUND' }
    t.equal(missing.status, expected.status)
    t.match(JSON.parse(missing.body), { code: expected.code })

    for (const item of role.notYet) {
      t.ok(node.logs.some((l) => l.msg === `not built yet: ${item}` && l['role'] === name), `logged: ${item}`)
    }
    const metrics = await get(node.metricsPort, '/metrics')
    t.equal(metrics.status, 200)
    t.match(metrics.body, /^espra_node_children_alive\{process="parent"\} 1$/m)
    t.match(metrics.body, new RegExp(`^espra_${name}_http_requests_total\\{child="0"\\} \\d+$`, 'm'), 'the child\'s metrics, labelled by child')
    t.match(metrics.body, /^process_resident_memory_bytes\{process="parent"\} \d+$/m)
    t.match(metrics.body, /^process_resident_memory_bytes\{child="0"\} \d+$/m)
    t.equal((await get(node.metricsPort, '/other')).status, 404)
    t.same(await node.stop(), { code: 0, signal: null })
  })
}

t.test('a proxy registers, subscribes, and its children show the routing table the seed pushes', async (t) => {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '1s', 'seed-grace': '200ms' }
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast })
  const live = await startNode(t, 'live', { seed: seedAddress, children: 1, 'node-id': 'live-a', ...fast })
  const proxy = await startNode(t, 'proxy', { seed: seedAddress, children: 2, ...fast })

  // Listed with no peer at first, then with its child, a Live peer of its own (--live-homes children, the default).
  const table = await waitFor('the proxy health shows live-a and its child in its routing table', async () => {
    const h = await health(proxy.port)
    const routing = h.body['routing'] as { version: number; nodes: { id: string; port: number; peers?: unknown[] }[] } | undefined
    return routing?.nodes.some((n) => n.id === 'live-a' && n.peers?.length === 1) && routing
  })
  t.same(table.nodes, [{ id: 'live-a', address: '127.0.0.1', port: live.port, peers: [{ id: `live-a/0.${live.childPids()[0]}`, linkPort: live.port + 2000 }] }])
  t.equal((await health(proxy.port)).body['seedConnected'], true)

  // Stopping the live node deregisters it at once; the proxy hears the new table.
  await live.stop()
  await waitFor('live-a left the proxy routing table', async () => {
    const routing = (await health(proxy.port)).body['routing'] as { version: number; nodes: unknown[] }
    return routing.nodes.length === 0 && routing.version > table.version
  })

  // The seed going away leaves the proxy serving with its last state; it re-registers when a seed returns.
  await seed.stop()
  await waitFor('proxy sees the seed gone', async () => (await health(proxy.port)).body['seedConnected'] === false)
  t.equal((await health(proxy.port)).status, 200, 'still serving')
  const again = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast })
  await waitFor('proxy re-registered', async () => (await health(proxy.port)).body['seedConnected'] === true, 20_000)
  t.ok(proxy.logs.filter((l) => l.msg === 'registered with the seed').length >= 2, 'registered again')
  await proxy.stop()
  await again.stop()
})
