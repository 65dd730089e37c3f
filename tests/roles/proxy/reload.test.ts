// SIGHUP replaces a proxy's children one at a time under keep-alive load through to the Live nodes: nothing fails.
import t from 'tap'
import { waitFor } from '../../helpers/cluster.js'
import { startLoad } from '../../helpers/load.js'
import { cluster, HOST, totalHits } from '../../helpers/proxy-cluster.js'

t.test('SIGHUP under 200 keep-alive connections through the proxy: zero failed requests', async (t) => {
  const { proxy, backends } = await cluster(t)
  const before = proxy.childPids()
  const load = startLoad(proxy.port, { connections: 200, path: '/work', headers: { host: HOST } })
  await waitFor('load running', () => load.result.ok > 2000, 20_000)

  proxy.proc.kill('SIGHUP')
  await proxy.waitForLog((l) => l.msg === 'all children replaced', 'reload finished', 60_000)
  const okAtReload = load.result.ok
  await waitFor('load continues on the new children', () => load.result.ok > okAtReload + 2000, 20_000)
  const result = await load.stop()
  t.comment(`requests ${result.ok}, Connection: close answers ${result.closes}`)

  t.same(result.errors, {}, 'no transport errors (resets, refused, hang-ups)')
  t.same(result.badStatus, {}, 'every answer was 200 from a Live node')
  t.ok(totalHits(backends) >= result.ok, 'every answer came from a Live node')
  const after = proxy.childPids()
  t.equal(after.length, 2)
  t.notOk(after.some((pid) => before.includes(pid)), 'every child was replaced')
  t.notOk(proxy.logs.some((l) => /crashed/.test(l.msg)), 'no crash')
})
