// SIGHUP replaces every child one at a time under continuous keep-alive load without losing a request.
import t from 'tap'
import { startNode, waitFor } from '../../helpers/cluster.js'
import { startLoad } from '../../helpers/load.js'

const CONNECTIONS = 200

t.test('SIGHUP under 200 keep-alive connections: zero failed requests, zero resets', async (t) => {
  const node = await startNode(t, 'live', { children: 2 })
  const before = node.childPids()
  const load = startLoad(node.port, { connections: CONNECTIONS, path: '/_espra/health' })
  await waitFor('load running', () => load.result.ok > 2000, 20_000)

  node.proc.kill('SIGHUP')
  await node.waitForLog((l) => l.msg === 'all children replaced', 'reload finished', 60_000)
  const okAtReload = load.result.ok
  await waitFor('load continues on the new children', () => load.result.ok > okAtReload + 2000, 20_000)
  const result = await load.stop()
  t.comment(`requests ${result.ok}, Connection: close answers ${result.closes}`)

  t.same(result.errors, {}, 'no transport errors (resets, refused, hang-ups)')
  t.same(result.badStatus, {}, 'every answer was 200')
  t.ok(result.closes >= 1, 'draining children told keep-alive clients to reconnect')
  const after = node.childPids()
  t.equal(after.length, 2)
  t.notOk(after.some((pid) => before.includes(pid)), 'every child was replaced')
  for (const pid of before) {
    t.ok(node.logs.some((l) => /^child \d+ exited$/.test(l.msg) && l.childPid === pid && l['code'] === 0), `old child ${pid} exited cleanly`)
  }
  t.notOk(node.logs.some((l) => /crashed/.test(l.msg)), 'no crash')
  t.same(await node.stop(), { code: 0, signal: null })
})
