// Interchangeable seeds on one PostgreSQL (a real server started here) as real processes: the
// leader killed with SIGKILL, then a leader paused (SIGSTOP) for twice its lease and resumed.
// Nodes list both seeds and find the leader whichever they reach first.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { createMetaTaskQueue } from '../../lib/tasks/queue-meta.js'
import { newTask } from '../../lib/tasks/task.js'
import { createMetaClient, type MetaClient } from '../../lib/transport/meta-client.js'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { startNode, startSeedPair, type StartedNode } from '../helpers/cluster.js'
import { captureLog, SECRET } from '../helpers/meta.js'
import { startPostgres } from '../helpers/postgres.js'
import { runCli, waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const LEASE_MS = 2000
// Nodes heartbeat every 200 ms; a seed evicts after 1 s of silence, but not during its 8 s grace.
const TIMINGS = { 'heartbeat-interval': '200ms', 'heartbeat-timeout': '1s', 'seed-grace': '8s' }

interface Seeds {
  a: StartedNode
  b: StartedNode
  addresses: string[]
  list: string
  blobDir: string
}

async function twoSeeds(t: Test, url: string): Promise<Seeds> {
  const blobDir = testDir('espra-failover-blobs-')
  const { seeds: [a, b], addresses } = await startSeedPair(t, { datastore: url, 'seed-lease': `${LEASE_MS}ms`, 'blob-dir': blobDir, children: 1, ...TIMINGS }, ['seed-a', 'seed-b'])
  // Nodes list the follower first: they must be sent on to the leader.
  return { a, b, addresses, list: [...addresses].reverse().join(','), blobDir }
}

function admin(t: Test, seeds: readonly string[]): MetaClient {
  const c = createMetaClient({ seeds, secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 * 1024, log: captureLog('silent').log, reconnect: true, backoffMaxMs: 300 })
  t.teardown(() => c.destroy())
  return c
}

const cli = (...args: string[]) => runCli(['admin', ...args], { env: { ...process.env, ESPRA_SECRET: SECRET } })
const nodeIds = (nodes: NodeView[]) => nodes.map((n) => n.id).sort()

/**
 * Who leads now, asked of the leader itself. seed-a took the lease first, but on a loaded machine a
 * leader that misses its renewals steps down and the lease moves (by design): the tests ask, not assume.
 */
async function leaderNow(c: MetaClient, seeds: Seeds): Promise<{ id: string; epoch: number; proc: StartedNode; other: StartedNode; address: string }> {
  const l = await waitFor('a leader', async () => {
    const answer = await c.request<{ seed: string; leader: boolean; epoch: number }>('leader', {}).catch(() => null)
    return answer?.leader ? answer : undefined
  })
  const a = l.seed === 'seed-a'
  return { id: l.seed, epoch: l.epoch, proc: a ? seeds.a : seeds.b, other: a ? seeds.b : seeds.a, address: seeds.addresses[a ? 0 : 1]! }
}

t.test('leader killed with SIGKILL: the follower takes over with a higher epoch, nothing written is lost, nodes re-register, none evicted', async (t) => {
  const url = await postgres.createDatabase()
  const seeds = await twoSeeds(t, url)
  const lives = await Promise.all(['live-1', 'live-2'].map((id) => startNode(t, 'live', { seed: seeds.list, 'node-id': id, ...TIMINGS })))
  for (const live of lives) await live.waitForLog((l) => l.msg === 'registered with the seed', 'registered')
  const c = admin(t, seeds.addresses)
  await c.ready
  const first = await leaderNow(c, seeds)
  if (first.id === 'seed-a') t.ok(lives.every((l) => l.logs.some((x) => x.msg === 'seed does not lead; moving to the leader')), 'nodes reaching the follower first were sent to the leader')

  // Admin commands work against any seed: the follower is listed alone here.
  const follower = seeds.addresses[first.id === 'seed-a' ? 1 : 0]!
  const status = await cli('status', '--seed', follower)
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, `leader: ${first.id} at ${first.address} (epoch ${first.epoch}, lease ${LEASE_MS} ms)`)
  const listed = await cli('nodes', '--json', '--seed', follower)
  const before = JSON.parse(listed.stdout) as NodeView[]
  t.same(nodeIds(before), ['live-1', 'live-2', 'seed-a', 'seed-b'], 'both seeds and both nodes, listed by the leader')
  t.match(before.find((n) => n.id === first.id), { leader: true, epoch: first.epoch })
  t.match(before.find((n) => n.id !== first.id && n.role === 'seed'), { leader: false, epoch: first.epoch })

  // Written just before the kill: a build, an upload token, a table row, a task.
  const buildDir = testDir('espra-failover-build-')
  mkdirSync(join(buildDir, 'public'))
  writeFileSync(join(buildDir, 'public', 'index.html'), '<h1>kept</h1>')
  const pushed = await cli('push-build', buildDir, '--message', 'before the kill', '--seed', seeds.list)
  t.equal(pushed.code, 0, pushed.stderr)
  t.equal(pushed.stdout, 'b1\n')
  const ds = createDatastoreClient(c)
  await ds.put('uploadTokens', 'tok-1', { user: 'u1', bytes: 10 })
  await ds.put('appTables', 'notes/n1', { v: { text: 'kept' } })
  const queue = createMetaTaskQueue(c)
  await queue.enqueue(newTask('email.send', { to: 'a@example.com' }))

  const victim = await leaderNow(c, seeds)
  victim.proc.proc.kill('SIGKILL')
  const took = await victim.other.waitForLog((l) => l.msg === 'seed leads the cluster' && Number(l['epoch']) > victim.epoch, 'the other seed takes over', 20_000)
  t.equal(took['epoch'], victim.epoch + 1, 'the epoch grew by one')
  const survivor = victim.id === 'seed-a' ? 'seed-b' : 'seed-a'

  const after = admin(t, seeds.addresses)
  await after.ready
  const lead = await waitFor('the leader answers', async () => {
    const l = await after.request<{ seed: string; leader: boolean; epoch: number }>('leader', {}).catch(() => null)
    return l?.leader === true ? l : undefined
  })
  t.match(lead, { seed: survivor, leader: true, epoch: took['epoch'] })
  const ds2 = createDatastoreClient(after)
  t.same(await ds2.get('uploadTokens', 'tok-1'), { user: 'u1', bytes: 10 }, 'the token is there')
  t.same(await ds2.get('appTables', 'notes/n1'), { v: { text: 'kept' } }, 'the table row is there')
  t.match(await after.request('build.current', {}), { id: 'b1' }, 'the current build is b1')
  t.match(await createMetaTaskQueue(after).counts(), { ready: 1 }, 'the task is there')

  const back = await waitFor('nodes re-registered with the new leader', async () => {
    const nodes = await after.request<NodeView[]>('nodes', {}).catch(() => [])
    return nodeIds(nodes).join() === `live-1,live-2,${survivor}` ? nodes : undefined
  }, 20_000)
  t.match(back.find((n) => n.id === survivor), { leader: true, epoch: took['epoch'] })
  for (const live of lives) t.equal(live.proc.exitCode, null, `${live.logs[0]?.['nodeId'] ?? 'live'} kept running`)
  // Past the grace and a heartbeat timeout: still both there, and no node was ever evicted.
  await victim.other.waitForLog((l) => l.msg === 'leader state loaded from the datastore; nodes re-registering' && l['epoch'] === took['epoch'], 'state loaded')
  await new Promise((resolve) => setTimeout(resolve, 9_500))
  t.same(nodeIds(await after.request<NodeView[]>('nodes', {})), ['live-1', 'live-2', survivor].sort(), 'nobody evicted after the grace')
  for (const live of lives) t.notOk(live.logs.some((l) => l['code'] === 'ESPRA_ERR_META_IDLE'), 'no node was told it was evicted')
})

t.test('leader paused (SIGSTOP) for twice its lease, then resumed: it has stepped down, its nodes went to the new leader, no push of its is taken', async (t) => {
  const url = await postgres.createDatabase()
  const seeds = await twoSeeds(t, url)
  const live = await startNode(t, 'live', { seed: seeds.list, 'node-id': 'live-1', ...TIMINGS })
  await live.waitForLog((l) => l.msg === 'registered with the seed', 'registered')
  const c = admin(t, seeds.addresses)
  await c.ready
  const paused = await leaderNow(c, seeds)
  const other = paused.id === 'seed-a' ? 'seed-b' : 'seed-a'

  paused.proc.proc.kill('SIGSTOP')
  const took = await paused.other.waitForLog((l) => l.msg === 'seed leads the cluster' && Number(l['epoch']) > paused.epoch, 'the other seed takes over', 20_000)
  t.equal(took['epoch'], paused.epoch + 1)
  await new Promise((resolve) => setTimeout(resolve, 2 * LEASE_MS))
  paused.proc.proc.kill('SIGCONT')
  const stepped = await paused.proc.waitForLog((l) => l.msg === 'seed stepped down: no longer the leader' && l['epoch'] === paused.epoch, 'the paused seed steps down')
  t.equal(stepped['epoch'], paused.epoch)
  // It pushed nothing after waking: every push it would send is refused by its own lease check, and
  // a node that has seen the newer epoch ignores the older one (tests/seed/push-fencing.test.ts drives that directly).
  const nodes = await waitFor('live-1 and the paused seed registered with the new leader', async () => {
    const n = await c.request<NodeView[]>('nodes', {}).catch(() => [])
    return n.some((x) => x.id === 'live-1') && n.some((x) => x.id === paused.id) && n.some((x) => x.id === other) ? n : undefined
  }, 20_000)
  t.match(nodes.find((n) => n.id === paused.id), { leader: false, epoch: took['epoch'] }, 'the paused seed is back as a follower')
  t.match(nodes.find((n) => n.id === other), { leader: true, epoch: took['epoch'] })
  t.match(await c.request('leader', {}), { seed: other, leader: true, epoch: took['epoch'] })
  t.notOk(paused.proc.logs.some((l) => l.msg === 'seed leads the cluster' && Number(l['epoch']) > paused.epoch), 'the paused seed did not take the lease back')
  t.notOk(live.logs.some((l) => l['code'] === 'ESPRA_ERR_META_IDLE'), 'the node was never evicted')
})
