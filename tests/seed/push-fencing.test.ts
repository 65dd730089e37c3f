// Fencing on the node's side, with real meta servers and a real meta client: a push stamped with
// an epoch older than one already seen is ignored (and logged once), a follower's welcome sends the
// client on to the leader, and a seed that does not lead sends no push at all.
import t, { type Test } from 'tap'
import { startMetaServer, type MetaServer } from '../../lib/transport/meta-server.js'
import { createMetaClient } from '../../lib/transport/meta-client.js'
import { captureLog, SECRET, until } from '../helpers/meta.js'

interface Lead { leader: boolean; epoch: number | null; address: string | null }

async function server(t: Test, lead: () => Lead, pushEpoch: () => number | null): Promise<MetaServer & { address: string }> {
  const s = await startMetaServer({
    host: '127.0.0.1', port: 0, secret: SECRET, seedId: 'seed', maxFrame: 64 * 1024, log: captureLog('silent').log,
    handlers: new Map([['ping', () => ({})]]), messages: new Map(),
    pushEpoch, welcome: () => ({ lead: lead() }),
  })
  t.teardown(() => s.destroy())
  return Object.assign(s, { address: `127.0.0.1:${s.port}` })
}

function push(s: MetaServer, op: string, body: unknown): boolean[] {
  return [...s.peers].map((p) => p.session.send(op, body))
}

t.test('a push from an older epoch is ignored and logged once; a newer one is taken', async (t) => {
  const current = await server(t, () => ({ leader: true, epoch: 2, address: null }), () => 2)
  // A deposed leader that has not noticed yet: it still believes it leads under epoch 1.
  let staleEpoch = 1
  const deposed = await server(t, () => ({ leader: true, epoch: 1, address: null }), () => staleEpoch)
  const pushes: unknown[] = []
  const { log, lines } = captureLog('debug')
  const c = createMetaClient({
    seeds: [current.address, deposed.address], secret: SECRET, peer: { kind: 'node', id: 'n1' }, maxFrame: 64 * 1024, log,
    reconnect: true, backoffMaxMs: 100, onPush: (_op, body) => pushes.push(body),
  })
  t.teardown(() => c.destroy())
  await c.ready
  t.equal(c.epoch, 2, 'the welcome told the epoch')
  await until(() => current.peers.size === 1)
  t.same(push(current, 'routing', { v: 'from epoch 2' }), [true])
  await until(() => pushes.length === 1)

  current.destroy()
  await until(() => deposed.peers.size === 1, 5000, 'moved to the other seed')
  push(deposed, 'routing', { v: 'stale 1' })
  push(deposed, 'routing', { v: 'stale 2' })
  t.equal(c.epoch, 2, 'an older welcome does not lower the epoch')
  staleEpoch = 3
  push(deposed, 'routing', { v: 'from epoch 3' })
  await until(() => pushes.length === 2)
  t.same(pushes, [{ v: 'from epoch 2' }, { v: 'from epoch 3' }], 'both stale pushes were ignored')
  t.equal(c.epoch, 3)
  const ignored = lines.filter((l) => l.msg === 'push from a seed that no longer leads ignored')
  t.equal(ignored.length, 1, 'logged once for the stale epoch')
  t.match(ignored[0], { level: 'warn', epoch: 1, current: 2, op: 'routing' })
})

t.test('a follower\'s welcome sends the client to the leader; without a known leader it stays', async (t) => {
  const leader = await server(t, () => ({ leader: true, epoch: 4, address: null }), () => 4)
  const follower = await server(t, () => ({ leader: false, epoch: 4, address: leader.address }), () => null)
  const lost = await server(t, () => ({ leader: false, epoch: 4, address: null }), () => null)
  const { log, lines } = captureLog('debug')
  const c = createMetaClient({ seeds: [follower.address], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 64 * 1024, log, reconnect: false })
  t.teardown(() => c.destroy())
  await c.ready
  t.equal(c.seed, leader.address, 'linked to the leader')
  t.match(lines.find((l) => l.msg === 'seed does not lead; moving to the leader'), { seed: follower.address, leader: leader.address, epoch: 4 })

  const stay = createMetaClient({ seeds: [follower.address], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 64 * 1024, log, reconnect: false, followLeader: false })
  t.teardown(() => stay.destroy())
  await stay.ready
  t.equal(stay.seed, follower.address, 'followLeader: false stays')
  const none = createMetaClient({ seeds: [lost.address], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 64 * 1024, log, reconnect: false })
  t.teardown(() => none.destroy())
  await none.ready
  t.equal(none.seed, lost.address, 'no leader named: it stays (leader-only ops answer ESPRA_ERR_SEED_NOT_LEADER there)')
  await until(() => follower.peers.size === 1)
  t.same(push(follower, 'routing', {}), [false], 'a seed that does not lead sends no push')
})
