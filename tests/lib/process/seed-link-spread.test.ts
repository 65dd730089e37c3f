// Datastore and task ops spread over the seeds (lib/process/seed-link.ts): with two seeds on one real PostgreSQL, a
// node's `ds.*` ops (and `tasks.*`/`mailq.*` when the queues are in the database) go to the seed its id picks, leader
// or follower, while everything else goes to the leader; with embedded seeds (no leader elected, each its own store),
// or `--tasks embedded` (each seed its own queues), they stay on the leader's link.
import t, { type Test } from 'tap'
import { loadConfig } from '../../../lib/core/config.js'
import type { NodeState } from '../../../lib/core/node-state.js'
import { createSeedLink, spreadOrder, type SeedLink } from '../../../lib/process/seed-link.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { proxyRole } from '../../../roles/proxy/role.js'
import { freePort, startNode, startSeedPair, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { captureLog, SECRET } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'
import { scrape } from '../../helpers/prom-text.js'
import { testDir } from '../../helpers/temp-dir.js'

const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '3s', 'seed-grace': '0' }

async function puts(seed: StartedNode): Promise<number> {
  return (await scrape(seed.metricsPort)).find('espra_seed_datastore_op_duration_seconds_count', { op: 'put' }).reduce((n, s) => n + s.value, 0)
}

/** Task ops `queue`.`op` the seed served (its own count, espra_seed_task_op_duration_seconds). */
async function taskOps(seed: StartedNode, queue: string, op: string): Promise<number> {
  return (await scrape(seed.metricsPort)).find('espra_seed_task_op_duration_seconds_count', { queue, op }).reduce((n, s) => n + s.value, 0)
}

/** Two seeds on one fresh database, seed-a leading; `list` is their meta addresses in that order. */
async function twoPostgresSeeds(t: Test, extra: Record<string, string> = {}): Promise<{ a: StartedNode; b: StartedNode; list: string[] }> {
  const postgres = await startPostgres(t)
  const url = await postgres.createDatabase('spread')
  const { seeds: [a, b], addresses } = await startSeedPair(t, { datastore: url, 'blob-dir': testDir('espra-node-test-spread-'), ...TIMINGS, ...extra }, ['seed-a', 'seed-b'])
  return { a, b, list: addresses }
}

/** A node id whose datastore link picks `list[index]` first. */
const idPicking = (list: string[], index: number, prefix: string): string =>
  Array.from({ length: 40 }, (_, i) => `${prefix}-${i}`).find((id) => spreadOrder(list, id)[0] === list[index])!

/** Enqueues through `l` until `seed` has served one (the datastore link connects after the main one). */
async function untilTasksReach(l: SeedLink, seed: StartedNode, queue: string, label: string): Promise<void> {
  const start = await taskOps(seed, queue, 'enqueue')
  await waitFor(`${label}: ${queue}.enqueue reaches its seed`, async () => {
    await l.request(`${queue}.enqueue`, { name: 'warm', payload: new Uint8Array(1), attempts: 1, delay: 60_000 })
    return (await taskOps(seed, queue, 'enqueue')) > start || undefined
  }, 20_000)
}

function link(t: Test, seeds: string, nodeId: string): SeedLink {
  const config = loadConfig({ flags: { role: 'proxy', nodeId, seed: seeds, bind: '127.0.0.1', advertise: '127.0.0.1' }, env: { ESPRA_SECRET: SECRET } })
  const state: NodeState = { draining: false, childrenAlive: 0, childrenWanted: 0, seedConnected: false, build: null, crashLooping: [], routing: null }
  const l = createSeedLink({
    config, role: proxyRole, log: captureLog('silent').log, startedAt: Date.now(), state: () => state,
    load: () => ({ connections: 0, rps: 0, rssBytes: 0, lagMs: 0 }), onPush: () => {}, onChange: () => {},
  })
  t.teardown(() => l.close())
  return l
}

/** Puts until `seed` has served one of them (the datastore link connects after the main one), then counts 10 more. */
async function tenPutsServedBy(l: SeedLink, seeds: StartedNode[], expect: StartedNode, id: string): Promise<number[]> {
  let i = 0
  const start = await puts(expect)
  await waitFor(`${id}'s puts reach its seed`, async () => {
    await l.request('ds.put', { kind: 'cluster', key: `${id}-warm-${i++}`, value: { n: i } })
    return (await puts(expect)) > start || undefined
  }, 20_000)
  const before = await Promise.all(seeds.map(puts))
  for (let n = 0; n < 10; n++) await l.request('ds.put', { kind: 'cluster', key: `${id}-${n}`, value: { n } })
  const after = await Promise.all(seeds.map(puts))
  return after.map((a, k) => a - before[k]!)
}

t.test('two seeds on PostgreSQL: each node puts through the seed its id picks, the follower included', async (t) => {
  const postgres = await startPostgres(t)
  const url = await postgres.createDatabase('spread')
  const { seeds: [a, b], addresses: list } = await startSeedPair(t, { datastore: url, 'blob-dir': testDir('espra-node-test-spread-'), ...TIMINGS }, ['seed-a', 'seed-b'])
  const ids = Array.from({ length: 20 }, (_, i) => `spread-${i}`)
  const toA = ids.find((id) => spreadOrder(list, id)[0] === list[0])!
  const toB = ids.find((id) => spreadOrder(list, id)[0] === list[1])!

  for (const [id, seed, name] of [[toA, a, 'seed-a (leader)'], [toB, b, 'seed-b (follower)']] as const) {
    const l = link(t, list.join(','), id)
    await waitFor(`${id} registered`, () => l.connected || undefined)
    const served = await tenPutsServedBy(l, [a, b], seed, id)
    t.same(served, seed === a ? [10, 0] : [0, 10], `${id}: all ten puts served by ${name}`)
    // Registry ops stay with the leader whichever seed serves the datastore.
    t.ok(((await l.request<{ id: string }[]>('nodes', {})).some((n) => n.id === id)), `${id} is in the leader's registry`)
  }
  t.same(new Set(ids.map((id) => spreadOrder(list, id)[0])).size, 2, 'node ids spread over both seeds')
})

t.test('two seeds on PostgreSQL with --tasks postgres: task ops go to the seed the id picks; a lease waiting on one seed gets a task enqueued on the other', async (t) => {
  const { a, b, list } = await twoPostgresSeeds(t)
  const toA = idPicking(list, 0, 'tasks')
  const toB = idPicking(list, 1, 'tasks')
  const la = link(t, list.join(','), toA)
  const lb = link(t, list.join(','), toB)
  await waitFor('both registered', () => (la.connected && lb.connected) || undefined)
  for (const queue of ['tasks', 'mailq']) {
    await untilTasksReach(la, a, queue, toA)
    await untilTasksReach(lb, b, queue, toB)
    const before = await Promise.all([a, b].map((s) => taskOps(s, queue, 'enqueue')))
    for (let n = 0; n < 5; n++) await lb.request(`${queue}.enqueue`, { name: 'delayed', payload: new Uint8Array([n]), attempts: 1, delay: 60_000 })
    const after = await Promise.all([a, b].map((s) => taskOps(s, queue, 'enqueue')))
    t.same(after.map((x, k) => x - before[k]!), [0, 5], `${queue}: all five enqueues through ${toB} served by seed-b (the follower)`)

    // A lease waiting on seed-b, the task enqueued on seed-a: the lease gets it (seed-a's NOTIFY wakes seed-b's waiter).
    const leasesB = await taskOps(b, queue, 'lease')
    const waiting = lb.request<{ tasks: { id: string; name: string }[] }>(`${queue}.lease`, { max: 1, leaseMs: 30_000, waitMs: 25_000 }, 30_000)
    // Requests on one link are taken in order: once a later one is answered, seed-b has the lease in hand.
    await lb.request(`${queue}.counts`, {})
    const { id } = await la.request<{ id: string }>(`${queue}.enqueue`, { name: 'now', payload: new Uint8Array([7]), attempts: 1, delay: 0 })
    const got = await waiting
    t.same(got.tasks.map((x) => [x.id, x.name]), [[id, 'now']], `${queue}: the lease waiting on seed-b got the task enqueued on seed-a`)
    t.equal((await taskOps(b, queue, 'lease')) - leasesB, 1, `${queue}: seed-b served the lease`)
  }
  // The registry stays with the leader.
  t.ok(((await lb.request<{ id: string }[]>('nodes', {})).some((n) => n.id === toB)), `${toB} is in the leader's registry`)
})

t.test('two seeds on PostgreSQL with --tasks embedded (each its own queues): task ops stay with the leader, ds.* still spreads', async (t) => {
  const { a, b, list } = await twoPostgresSeeds(t, { tasks: 'embedded' })
  const toB = idPicking(list, 1, 'own')
  const l = link(t, list.join(','), toB)
  await waitFor(`${toB} registered`, () => l.connected || undefined)
  t.same(await tenPutsServedBy(l, [a, b], b, toB), [0, 10], 'ds.put goes to seed-b (the id\'s pick)')
  const before = await Promise.all([a, b].map((s) => taskOps(s, 'tasks', 'enqueue')))
  for (let n = 0; n < 5; n++) await l.request('tasks.enqueue', { name: 'n', payload: new Uint8Array([n]), attempts: 1, delay: 0 })
  const after = await Promise.all([a, b].map((s) => taskOps(s, 'tasks', 'enqueue')))
  t.same(after.map((x, k) => x - before[k]!), [5, 0], 'tasks.enqueue served by seed-a, the leader, whose queue the admin CLI reads')
})

t.test('two embedded seeds (each its own store): puts stay with the seed the node is registered with', async (t) => {
  const [portA, portB] = [await freePort(), await freePort()]
  const a = await startNode(t, 'seed', { ...TIMINGS, 'node-id': 'seed-a', 'meta-port': portA, seed: `127.0.0.1:${portA}` })
  const b = await startNode(t, 'seed', { ...TIMINGS, 'node-id': 'seed-b', 'meta-port': portB, seed: `127.0.0.1:${portB}` })
  const list = [`127.0.0.1:${portA}`, `127.0.0.1:${portB}`]
  for (const picks of list) {
    const id = Array.from({ length: 20 }, (_, i) => `embedded-${i}`).find((x) => spreadOrder(list, x)[0] === picks)!
    const l = link(t, list.join(','), id)
    await waitFor(`${id} registered`, () => l.connected || undefined)
    const registeredAt = await Promise.all(list.map(async (s) => (await seedNodes(t, s)).some((n) => n.id === id)))
    t.equal(registeredAt.filter(Boolean).length, 1, `${id} is registered with one seed`)
    const before = await Promise.all([a, b].map(puts))
    for (let n = 0; n < 10; n++) await l.request('ds.put', { kind: 'cluster', key: `${id}-${n}`, value: { n } })
    const after = await Promise.all([a, b].map(puts))
    t.same(after.map((x, k) => x - before[k]!), registeredAt.map((r) => (r ? 10 : 0)), `${id}: all ten puts on the seed it registered with, whichever its id picks`)
  }
})

/** The registry of the seed at `address`, read over an admin link of the test's own. */
async function seedNodes(t: Test, address: string): Promise<{ id: string }[]> {
  const c = createMetaClient({ seeds: [address], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1 << 20, log: captureLog('silent').log, reconnect: false })
  t.teardown(() => c.close())
  await c.ready
  return c.request<{ id: string }[]>('nodes', {})
}
