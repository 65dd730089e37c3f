// `admin rolling-restart` through a leader failover: two seeds on one PostgreSQL (a real server started
// here), two Live nodes of two children each; the leader is killed with SIGKILL while the first node
// replaces its children. The command follows the leader to the other seed, asks again what the dead
// leader could not answer, and finishes: every child of both nodes new, exit 0.
// In restart mode (two Live nodes each run by a process manager that starts a node again when it exits 75),
// the leader is killed once the first node got its restart order: the run finishes on the new leader, each node
// exited once and was started again, both back undrained, no restart order left.
import t from 'tap'
import { RESTART_EXIT_CODE } from '../../lib/transport/drain-order.js'
import { createMetaClient } from '../../lib/transport/meta-client.js'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { freePort, startNode, startSeedPair } from '../helpers/cluster.js'
import { managed } from '../helpers/managed-node.js'
import { captureLog, SECRET } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { childPids, runCli, waitFor } from '../helpers/up.js'

const postgres = await startPostgres(t)
const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s', 'seed-grace': '4s' }

t.test('the leader killed during a reload: the run carries on with the new leader and ends with every child new', async (t) => {
  const url = await postgres.createDatabase()
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': '2000ms', children: 1, ...TIMINGS })
  const lives = await Promise.all(['live-1', 'live-2'].map((id) => startNode(t, 'live', { seed: addresses.join(','), 'node-id': id, children: 2, ...TIMINGS })))
  for (const live of lives) await live.waitForLog((l) => l.msg === 'registered with the seed', 'registered')
  const before = lives.map((l) => childPids(l.proc.pid!))
  t.equal(before.flat().length, 4, 'two children each')

  const admin = createMetaClient({ seeds: addresses, secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 300 })
  t.teardown(() => admin.destroy())
  await admin.ready
  const lead = await waitFor('a leader', async () => {
    const answer = await admin.request<{ seed: string; leader: boolean }>('leader', {}).catch(() => null)
    return answer?.leader ? answer.seed : undefined
  })
  const leader = seeds[lead === 'seed-0' ? 0 : 1]!

  const run = runCli(['admin', 'rolling-restart', '--role', 'live', '--seed', addresses.join(','), '--timeout', '60s'], { env: { ...process.env, ESPRA_SECRET: SECRET } })
  await lives[0]!.waitForLog((l) => l.msg === 'the seed asks for every child to be replaced (admin rolling-restart)', 'live-1 asked to reload', 30_000)
  leader.proc.kill('SIGKILL')

  const r = await run
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^rolling restart of 2 live node\(s\) done: 2 reloaded, 0 failed, in [\d.]+s$/m, 'the summary')
  t.match(r.stderr, /^\[1\/2\] live-1: 2 children replaced, healthy/m, 'live-1 done')
  t.match(r.stderr, /^\[2\/2\] live-2: 2 children replaced, healthy/m, 'live-2 done')
  const after = lives.map((l) => childPids(l.proc.pid!))
  for (const [i, live] of ['live-1', 'live-2'].entries()) {
    t.equal(after[i]!.length, 2, `${live}: two children`)
    t.same(after[i]!.filter((p) => before[i]!.includes(p)), [], `${live}: every child new`)
  }
})

t.test('restart mode, the leader killed once the first node got its restart order: the run finishes, each node restarted once, none left drained', async (t) => {
  const url = await postgres.createDatabase()
  const { seeds, addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': '2000ms', children: 1, ...TIMINGS })
  const list = addresses.join(',')
  const lives = [await managed(t, 'live', { seed: list, 'node-id': 'live-1', children: 1, ...TIMINGS }), await managed(t, 'live', { seed: list, 'node-id': 'live-2', children: 1, ...TIMINGS })]
  for (const live of lives) await live.current().waitForLog((l) => l.msg === 'registered with the seed', 'registered')
  const pids = lives.map((l) => l.current().proc.pid)

  const run = runCli(['admin', 'rolling-restart', '--role', 'live', '--mode', 'restart', '--grace', '1s', '--seed', list, '--timeout', '60s'], { env: { ...process.env, ESPRA_SECRET: SECRET } })
  await lives[0]!.current().waitForLog((l) => l.msg === 'drain ordered: health answers 503, out of routing', 'live-1 got its restart order', 30_000)
  seeds[0].proc.kill('SIGKILL')
  await seeds[1].waitForLog((l) => l.msg === 'seed leads the cluster', 'the other seed takes over', 20_000)

  const r = await run
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /^\[1\/2\] live-1: restarted \(pid \d+ -> \d+\), undrained, healthy/m, 'live-1 restarted')
  t.match(r.stderr, /^\[2\/2\] live-2: restarted \(pid \d+ -> \d+\), undrained, healthy/m, 'live-2 restarted')
  t.match(r.stdout, /^rolling restart of 2 live node\(s\) done: 2 restarted, 0 failed, in [\d.]+s$/m)
  for (const [i, m] of lives.entries()) {
    t.same(m.exits, [RESTART_EXIT_CODE], `live-${i + 1} exited once, with the restart status`)
    t.equal(m.starts.length, 2, `live-${i + 1} was started again once`)
    t.not(m.current().proc.pid, pids[i], 'a new process')
  }

  const admin = createMetaClient({ seeds: [addresses[1]], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 300 })
  t.teardown(() => admin.destroy())
  await admin.ready
  const nodes = await admin.request<NodeView[]>('nodes', { role: 'live' })
  t.same(nodes.map((n) => [n.id, n.health, n.drain, n.pid]).sort(), lives.map((m, i) => [`live-${i + 1}`, 'ok', null, m.current().proc.pid]), 'both new processes registered with the new leader, ok, undrained')
  t.same(await admin.request('node.drains', {}), { drains: [] }, 'no restart order left')
})

t.test('a seed list that answers nowhere: one line, exit 1, no waiting for a link that never comes', async (t) => {
  const port = await freePort()
  const started = Date.now()
  const r = await runCli(['admin', 'rolling-restart', '--role', 'live', '--seed', `127.0.0.1:${port}`], { env: { ...process.env, ESPRA_SECRET: SECRET } })
  t.equal(r.code, 1)
  t.match(r.stderr.trim(), /ESPRA_ERR_SEED_UNREACHABLE: no seed reachable \(127\.0\.0\.1:\d+: /)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.ok(Date.now() - started < 30_000, 'it gave up after one walk of the list')
})
