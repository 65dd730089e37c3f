// Datastore ops spread over the seeds (lib/process/seed-link.ts): with two seeds on one real PostgreSQL, a node's
// `ds.*` ops go to the seed its id picks, leader or follower, while everything else goes to the leader; with
// embedded seeds (no leader elected, each its own store) they stay on the leader's link.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { loadConfig } from '../../../lib/core/config.js'
import type { NodeState } from '../../../lib/core/node-state.js'
import { createSeedLink, spreadOrder, type SeedLink } from '../../../lib/process/seed-link.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { proxyRole } from '../../../roles/proxy/role.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { captureLog, SECRET } from '../../helpers/meta.js'
import { startPostgres } from '../../helpers/postgres.js'
import { scrape } from '../../helpers/prom-text.js'

const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '3s', 'seed-grace': '0' }

async function puts(seed: StartedNode): Promise<number> {
  return (await scrape(seed.metricsPort)).find('espra_seed_datastore_op_duration_seconds_count', { op: 'put' }).reduce((n, s) => n + s.value, 0)
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
  const [portA, portB] = [await freePort(), await freePort()]
  const common = { datastore: url, 'blob-dir': mkdtempSync(join(tmpdir(), 'espra-node-test-spread-')), ...TIMINGS }
  const a = await startNode(t, 'seed', { ...common, 'node-id': 'seed-a', 'meta-port': portA, seed: `127.0.0.1:${portA}` })
  await a.waitForLog((l) => l.msg === 'seed leads the cluster', 'seed-a leads')
  const b = await startNode(t, 'seed', { ...common, 'node-id': 'seed-b', 'meta-port': portB, seed: `127.0.0.1:${portB}` })
  await b.waitForLog((l) => l.msg === 'seed follows the leader', 'seed-b follows')
  const list = [`127.0.0.1:${portA}`, `127.0.0.1:${portB}`]
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
