// Regression (issue 10, item 2): one crash-looping child of a Live node took the whole node out of
// routing (health `degraded`), and the proxy answered every live request 503 although the node's
// other child was healthy. Now the node stays routed while a child serves, the looping child keeps
// being restarted, and health and metrics say `degraded` meanwhile.
import t from 'tap'
import { get, health, waitFor } from '../helpers/cluster.js'
import { send } from '../helpers/http.js'
import { token } from '../helpers/live.js'
import { admin } from '../helpers/app-cluster.js'
import { LIVE_HOST, liveBehindProxy } from '../helpers/live-proxy.js'

t.test('a Live node with one crash-looping child stays routed and serves through the proxy', async (t) => {
  const { live, proxy, seedAddress } = await liveBehindProxy(t, { children: 2 })
  const pub = token({ pub: ['room:*'] })
  const publish = () => send({
    host: '127.0.0.1', port: proxy.port, method: 'POST', path: '/pub/room:1', agent: false,
    headers: { host: LIVE_HOST, authorization: `Bearer ${pub}`, 'content-type': 'application/json' },
  }, '{"n":1}')
  t.equal((await publish()).status, 200, 'a publish through the proxy')

  const killed = new Set<number>()
  for (let i = 0; i < 5; i++) {
    const pid = await waitFor(`child 0 listening (round ${i})`, () => live.logs.find((l) => l.msg === 'child 0 listening' && !killed.has(l.childPid!))?.childPid, 30_000)
    killed.add(pid)
    process.kill(pid, 'SIGKILL')
    await live.waitForLog((l) => l.msg === 'child 0 crashed' && l.childPid === pid, `crash ${i}`)
  }
  await live.waitForLog((l) => l['code'] === 'ESPRA_ERR_CHILD_CRASHLOOP', 'crash loop logged')
  const degraded = await waitFor('the node says degraded', async () => {
    const h = await health(live.port)
    return h.body['health'] === 'degraded' && h
  })
  t.same((degraded.body['children'] as { crashLooping: number[] }).crashLooping, [0])
  t.match((await get(live.metricsPort, '/metrics')).body, /^espra_node_children_crash_looping\{process="parent"\} 1$/m, 'metrics alert')

  // Once the seed has heard the degraded health, the node must still be in the table.
  await waitFor('the seed sees live-a degraded', async () => {
    const nodes = JSON.parse((await admin(['nodes', '--json', '--seed', seedAddress])).stdout) as { id: string; health: string }[]
    return nodes.find((n) => n.id === 'live-a')?.health === 'degraded'
  })
  const routing = (await health(proxy.port)).body['routing'] as { nodes: { id: string }[] }
  t.same(routing.nodes.map((n) => n.id), ['live-a'], 'the degraded node is still routed')
  for (let i = 0; i < 5; i++) t.equal((await publish()).status, 200, `publish ${i + 1} through the proxy while degraded`)

  // And the looping child comes back: restarted with backoff, not left down.
  await live.waitForLog((l) => l.msg === 'child 0 listening' && !killed.has(l.childPid!), 'child 0 restarted after the crash loop', 30_000)
})
