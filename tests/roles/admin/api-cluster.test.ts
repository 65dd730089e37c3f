// The admin API's cluster routes against a real seed, a real admin node and a real Live node: status, the node list
// (the very objects of `admin nodes --json`), one node, drain and undrain, a rolling restart followed to its end, and
// builds pushed with the CLI then rolled back over HTTP. Every action leaves its audit entry.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FAST, startAdminApi } from '../../helpers/admin-api.js'
import { SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

const c = await startAdminApi(t)
const live = await startNode(t, 'live', { seed: c.seedAddress, children: 1, 'node-id': 'live-api-1', ...FAST })
await waitFor('the Live node registered, seen through the API', async () => {
  const a = await c.api('GET', '/api/nodes')
  return (a.status === 200 && a.json.some((n: { id: string; health: string }) => n.id === 'live-api-1' && n.health === 'ok')) || undefined
})
const cli = (...args: string[]) => runCli(['admin', ...args, '--seed', c.seedAddress], { env: { ...process.env, ESPRA_SECRET: SECRET } })
const auditActions = async (): Promise<{ action: string; target: string | null; outcome: string }[]> => (await c.api('GET', '/api/audit?limit=1000')).json.entries

t.test('GET /api/status: the nodes, maintenance, drained nodes and task counts', async (t) => {
  const a = await c.api('GET', '/api/status')
  t.equal(a.status, 200)
  t.equal(a.json.seed, c.seedAddress)
  t.same(a.json.nodes.map((n: { role: string }) => n.role).sort(), ['admin', 'live', 'seed'])
  t.same(a.json.maintenance.state, null)
  t.same(a.json.drains, { drains: [] })
  t.same(a.json.tasks, { backend: 'embedded', counts: { ready: 0, delayed: 0, leased: 0, dead: 0 } })
})

t.test('GET /api/nodes answers the objects `admin nodes --json` prints; GET /api/nodes/:id one of them', async (t) => {
  const [api, run] = await Promise.all([c.api('GET', '/api/nodes'), cli('nodes', '--json')])
  t.equal(run.code, 0)
  // Heartbeat ages and load figures move between two reads; everything else is the same object.
  const steady = (nodes: Record<string, unknown>[]) => nodes.map(({ heartbeatAgeMs: _a, load: _l, ...n }) => n).sort((a, b) => String(a['id']).localeCompare(String(b['id'])))
  t.same(steady(api.json), steady(JSON.parse(run.stdout)))
  t.same(Object.keys(api.json[0]).sort(), Object.keys(JSON.parse(run.stdout)[0]).sort(), 'the same fields')
  const one = await c.api('GET', '/api/nodes/live-api-1')
  t.equal(one.status, 200)
  t.match(one.json, { id: 'live-api-1', role: 'live', pid: live.proc.pid })
  // Each child's own figures, by slot, with the pid that serves it now (the node's load sums them). A child
  // reports its first figures a second after it starts, and the next heartbeat carries them.
  let withChildren: { load: { rssBytes: number; byChild?: { slot: number; pid: number; rssBytes: number }[] } } | undefined
  await waitFor('a heartbeat with the child\'s figures', async () => {
    withChildren = (await c.api('GET', '/api/nodes/live-api-1')).json
    return withChildren?.load.byChild !== undefined || undefined
  })
  const byChild = withChildren!.load.byChild!
  t.same(byChild.map((ch) => [ch.slot, ch.pid]), [[0, live.childPids()[0]]])
  t.match(byChild[0], { connections: Number, rps: Number, rssBytes: Number, lagMs: Number })
  t.ok(withChildren!.load.rssBytes > byChild[0]!.rssBytes, "the node's RSS adds the parent's to its child's")
  const unknown = await c.api('GET', '/api/nodes/nobody')
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ESPRA_ERR_NODE_UNKNOWN')
})

t.test('POST /api/nodes/:id/drain (then idle) and /undrain: the seed keeps the order, the node reports it', async (t) => {
  const drained = await c.api('POST', '/api/nodes/live-api-1/drain', { body: { then: 'idle', grace: '0s' } })
  t.equal(drained.status, 200)
  t.match(drained.json, { order: { then: 'idle', graceMs: 0 }, registered: true, previous: null })
  await waitFor('the node reports draining', async () => (await c.api('GET', '/api/nodes/live-api-1')).json.health === 'draining' || undefined)
  t.match((await c.api('GET', '/api/status')).json.drains.drains, [{ id: 'live-api-1', then: 'idle', registered: true }])
  const undrained = await c.api('POST', '/api/nodes/live-api-1/undrain')
  t.equal(undrained.status, 200)
  t.match(undrained.json, { undrained: true, registered: true })
  await waitFor('the node is back in service', async () => (await c.api('GET', '/api/nodes/live-api-1')).json.health === 'ok' || undefined)
  const again = await c.api('POST', '/api/nodes/live-api-1/undrain')
  t.match(again.json, { undrained: false }, 'undrain of a node not drained: nothing to do')
  const audit = await auditActions()
  t.match(audit.slice(0, 3), [
    { action: 'node.undrain', target: 'live-api-1', outcome: 'ok' },
    { action: 'node.undrain', target: 'live-api-1', outcome: 'ok' },
    { action: 'node.drain', target: 'live-api-1', outcome: 'ok', params: { then: 'idle', graceMs: 0, force: false } },
  ])
})

t.test('POST /api/rolling-restarts runs as a job; GET /api/rolling-restarts/:id follows it to its end', async (t) => {
  const before = (await c.api('GET', '/api/nodes/live-api-1')).json
  const started = await c.api('POST', '/api/rolling-restarts', { body: { role: 'live', timeout: '60s' } })
  t.equal(started.status, 202)
  t.match(started.json, { id: /^rr-/, state: 'running', operator: 'ops', plan: { role: 'live', mode: 'reload', batch: 1, timeoutMs: 60_000 } })
  t.equal(started.json.href, `/api/rolling-restarts/${started.json.id}`)
  const job = await waitFor('the job ended', async () => {
    const j = (await c.api('GET', started.json.href)).json
    return j.state !== 'running' ? j : undefined
  }, 60_000)
  t.equal(job.state, 'done', JSON.stringify(job.error))
  t.match(job.result, { role: 'live', mode: 'reload', done: 1, skipped: [] })
  t.ok(job.lines.some((l: { line: string }) => /live-api-1: 1 children replaced, healthy/.test(l.line)), 'the CLI\'s progress lines')
  t.equal((await c.api('GET', '/api/nodes/live-api-1')).json.pid, before.pid, 'a reload keeps the node\'s parent')
  const none = await c.api('GET', '/api/rolling-restarts/rr-00000000-00000000')
  t.equal(none.status, 404)
  t.equal(none.json.code, 'ESPRA_ERR_ADMIN_JOB_NOT_FOUND')
  const refused = await c.api('POST', '/api/rolling-restarts', { body: { role: 'seed' } })
  t.equal(refused.status, 400)
  t.match(refused.json, { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field: 'role' }, message: /^role: the seed runs in its parent only/ })
  t.match((await auditActions()).slice(0, 2), [
    { action: 'rolling-restart.start', outcome: 'ESPRA_ERR_ADMIN_BAD_REQUEST', status: 400, params: null },
    { action: 'rolling-restart.start', target: 'live', outcome: 'ok', status: 202 },
  ])
})

t.test('GET /api/builds, POST /api/builds/:id/rollback and GET /api/builds/:id', async (t) => {
  const dir = testDir('espra-api-build-')
  mkdirSync(join(dir, 'server'))
  writeFileSync(join(dir, 'server', 'main.js'), 'export default { fetch() { return new Response("one") } }\n')
  const first = await cli('push-build', dir, '--message', 'first')
  t.equal(first.code, 0, first.stderr)
  writeFileSync(join(dir, 'server', 'main.js'), 'export default { fetch() { return new Response("two") } }\n')
  const second = await cli('push-build', dir, '--message', 'second')
  t.equal(second.code, 0, second.stderr)
  const [one, two] = [first.stdout.trim(), second.stdout.trim()]
  const listed = await c.api('GET', '/api/builds')
  t.equal(listed.status, 200)
  t.equal(listed.json.current, two)
  t.same(listed.json.builds.map((b: { id: string; message: string }) => [b.id, b.message]), [[two, 'second'], [one, 'first']])
  const rolled = await c.api('POST', `/api/builds/${one}/rollback`)
  t.equal(rolled.status, 202)
  t.match(rolled.json, { id: one, staging: [], href: `/api/builds/${one}` })
  const status = await waitFor('the rollback is live', async () => {
    const s = (await c.api('GET', rolled.json.href)).json
    return s.state === 'live' ? s : undefined
  })
  t.match(status, { id: one, current: true })
  t.equal((await c.api('GET', '/api/builds')).json.current, one)
  const unknown = await c.api('POST', '/api/builds/b999/rollback')
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ESPRA_ERR_BUILD_NOT_FOUND')
  // Push over HTTP has its own test (api-push.test.ts); a push without a manifest is refused naming it.
  const push = await c.api('POST', '/api/builds', { body: {} })
  t.equal(push.status, 400)
  t.match(push.json, { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'manifest' } })
  t.match((await auditActions()).slice(0, 3), [
    { action: 'build.push', outcome: 'ESPRA_ERR_BUILD_INVALID' },
    { action: 'build.rollback', target: 'b999', outcome: 'ESPRA_ERR_BUILD_NOT_FOUND', status: 404 },
    { action: 'build.rollback', target: one, outcome: 'ok', status: 202 },
  ])
})

t.test('GET/POST/DELETE /api/maintenance', async (t) => {
  const on = await c.api('POST', '/api/maintenance', { body: { until: '2h', message: 'db upgrade', hosts: ['example.test'], allow: ['10.0.0.0/8'] } })
  t.equal(on.status, 200)
  t.match(on.json, { state: { message: 'db upgrade', hosts: ['example.test'], allow: ['10.0.0.0/8'] }, nodes: 3 })
  const read = await c.api('GET', '/api/maintenance')
  t.match(read.json.state, { message: 'db upgrade' })
  t.type(read.json.now, 'number')
  // Every registered node is told (seed, admin, live), also when there was nothing to clear.
  t.same((await c.api('DELETE', '/api/maintenance')).json, { cleared: true, nodes: 3 })
  t.match((await c.api('DELETE', '/api/maintenance')).json, { cleared: false })
  t.equal((await c.api('GET', '/api/maintenance')).json.state, null)
})
