// The stop sequence: SIGTERM fails health first, drains without failing a request, exits 0; a second signal forces.
import t from 'tap'
import { freePort, health, pidAlive, startNode, waitFor } from '../../helpers/cluster.js'
import { startLoad } from '../../helpers/load.js'

t.test('SIGTERM under load: health turns 503, no request fails, exit 0', async (t) => {
  const node = await startNode(t, 'admin', { children: 2, 'drain-timeout': '5s' })
  const children = node.childPids()
  // Each connection keeps asking until it hears the node is draining.
  const load = startLoad(node.port, { connections: 50, path: '/_espra/health', until: (status) => status === 503 })
  await waitFor('load running', () => load.result.ok > 500)
  node.proc.kill('SIGTERM')
  const result = await load.finished()
  const exit = await node.exited
  t.same(result.errors, {}, 'no transport errors')
  t.same(Object.keys(result.badStatus), ['503'], 'the only other answer is 503')
  t.equal(result.badStatus[503], 50, 'every connection saw 503 before the node went away')
  t.same(exit, { code: 0, signal: null }, 'exit 0')

  const order = (msg: RegExp): number => node.logs.findIndex((l) => msg.test(l.msg))
  t.ok(order(/^node health: draining$/) >= 0, 'health flipped to draining')
  t.ok(order(/^node health: draining$/) < order(/^child \d+ exited$/), 'health failed before any child left')
  t.ok(order(/^child \d+ exited$/) < order(/^stopped$/), 'children drained before the parent stopped')
  t.notOk(node.logs.some((l) => /crashed/.test(l.msg)), 'intended exits are not crashes')
  t.ok(children.every((pid) => !pidAlive(pid)), 'children are gone')
})

t.test('a second signal forces: children killed, exit 1', async (t) => {
  const node = await startNode(t, 'live', { children: 2, 'drain-timeout': '30s' })
  const children = node.childPids()
  node.proc.kill('SIGINT')
  await node.waitForLog((l) => l.msg === 'node health: draining', 'draining')
  node.proc.kill('SIGINT')
  t.same(await node.exited, { code: 1, signal: null })
  t.ok(node.logs.some((l) => l.msg === 'forcing stop: second SIGINT'))
  await waitFor('children gone', () => children.every((pid) => !pidAlive(pid)), 5000)
})

t.test('the seed parent serves health itself and stops on SIGTERM', async (t) => {
  const node = await startNode(t, 'seed', { 'meta-port': await freePort() })
  const h = await health(node.port)
  t.equal(h.status, 200)
  t.match(h.body, { ok: true, health: 'ok', role: 'seed', children: { alive: 0, wanted: 0 } })
  await waitFor('the seed registered with itself', async () => (await health(node.port)).body['seedConnected'] === true)
  t.same(await node.stop(), { code: 0, signal: null })
  t.ok(node.logs.some((l) => l.msg === 'deregistered from the seed'))
})

t.test('signals during start-up: SIGHUP does not kill the node, SIGTERM stops it once started', async (t) => {
  const hup = await startNode(t, 'app', { children: 2 }, { noWait: true })
  await hup.waitForLog((l) => l.msg.startsWith('not built yet:'), 'parent running')
  hup.proc.kill('SIGHUP')
  await hup.waitForLog((l) => l.msg === 'node started', 'started despite SIGHUP')
  t.equal((await health(hup.port)).status, 200)
  await hup.stop()

  const term = await startNode(t, 'app', { children: 2 }, { noWait: true })
  await term.waitForLog((l) => l.msg.startsWith('not built yet:'), 'parent running')
  term.proc.kill('SIGTERM')
  t.same(await term.exited, { code: 0, signal: null }, 'clean exit')
  t.ok(term.logs.some((l) => l.msg === 'stopped'))
  t.ok(term.childPids().every((pid) => !pidAlive(pid)), 'no child left')
})
