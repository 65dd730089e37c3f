// --live-homes children: two real Live nodes of two children each and a seed. Every child is a Live peer of its own,
// `<node>/<index>.<pid>` in the routing table; channels are homed on all four, and every subscriber gets every message
// of a channel in order, exactly once, whichever child its connection landed on and whichever node the publish came
// through. A child killed with kill -9 is a peer lost: its channels' backups (--live-replicas 2) take over with the
// same sequence, so a subscriber elsewhere misses nothing and a resume recovers; its replacement is a new peer. A stopping
// child hands its channels over; a node without a seed serves alone, its children homing the channels among themselves.
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { checkOrderedFanout, childPeersOf, connectLive, token, type LiveClient } from '../../helpers/live.js'
import { watcher } from '../../helpers/seed.js'

const metaPort = await freePort()
const seedFlags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '10s' }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...seedFlags, 'seed-grace': '0' })
const liveFlags = { ...seedFlags, 'live-homes': 'children', children: 2 }
const a = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...liveFlags, 'node-id': 'live-b' })
// The seed's routing tables as the Live nodes get them.
const tables = (await watcher(t, metaPort, { routing: 'us-1' })).tables
t.teardown(async () => {
  await Promise.all([a.stop(), b.stop()])
  await seed.stop()
})

const tableOf = (peers: string[]) => new Rendezvous(peers.map((id) => ({ id })))
const allPeers = () => [...childPeersOf(a), ...childPeersOf(b)]
await waitFor('two peers per node', () => childPeersOf(a).length === 2 && childPeersOf(b).length === 2, 20_000)
for (const node of [a, b]) {
  await waitFor('every child applied a table of four peers', () => new Set(node.logs.filter((l) => l.msg === 'live: routing table applied' && l['peers'] === 4 && l['listed'] === true).map((l) => l.pid)).size === 2, 20_000)
}

// Four channels homed on each child (the peers' ids hold pids: which names hash where differs from run to run).
const POOL = Array.from({ length: 2000 }, (_, i) => `room:${i}`)
const firstHomes = tableOf(allPeers())
const CHANNELS = allPeers().flatMap((p) => POOL.filter((ch) => firstHomes.pick(ch)!.id === p).slice(0, 4))
const tok = token({ sub: ['room:*'], pub: ['room:*'] })

t.test('the peers are the children, named by node, index and pid', async (t) => {
  for (const node of [a, b]) {
    const peers = childPeersOf(node).sort()
    const id = node === a ? 'live-a' : 'live-b'
    t.same(peers.map((p) => p.replace(/\.\d+$/, '')), [`${id}/0`, `${id}/1`])
    t.same(peers.map((p) => Number(p.split('.').at(-1))).sort(), node.childPids().sort(), 'each peer is one child process')
  }
})

t.test('ordering and exactly-once across nodes and children, publishes through both nodes', async (t) => {
  const clients: LiveClient[] = []
  // Several connections per node land on both of its children.
  for (let i = 0; i < 3; i++) clients.push(await connectLive(t, a.port, { token: tok }), await connectLive(t, b.port, { token: tok, msgpack: i === 0 }))
  await checkOrderedFanout(t, clients, CHANNELS, a.port, tok, 10)
  for (const c of clients) c.close()
})

t.test('kill -9 of a child that homes channels: the backups take over, nothing is lost; its replacement is a new peer', async (t) => {
  const before = allPeers()
  const homes = tableOf(before)
  const victim = childPeersOf(b)[0]!
  const victimPid = Number(victim.split('.').at(-1))
  const theirs = CHANNELS.filter((ch) => homes.pick(ch)!.id === victim)
  t.ok(theirs.length > 0, `${victim} homes some channels`)
  const watcher = await connectLive(t, a.port, { token: tok })
  const last = new Map<string, number>()
  for (const ch of theirs) {
    await watcher.call({ op: 'sub', ch })
    const ack = await watcher.call({ op: 'pub', ch, data: 'before' })
    t.equal(ack.op, 'ack')
    last.set(ch, ack['seq'] as number)
  }
  await waitFor('the watcher saw every message', () => theirs.every((ch) => watcher.messages(ch).length === 1))
  process.kill(victimPid, 'SIGKILL')
  await b.waitForLog((l) => l.msg === 'live: a child that homed channels exited without handing them over: their backups take over' && l['peer'] === victim, 'the parent saw its child die')
  await waitFor('a table names the dead child lost', () => tables.some((x) => x.lost?.includes(victim)), 20_000)
  const leftTable = (node: StartedNode) => node.logs.filter((l) => l.msg === 'live: a node left the routing table' && l['node'] === victim)
  await waitFor('both of a\'s children saw the dead child leave the table', () => leftTable(a).length === 2, 20_000)
  t.same(leftTable(a).map((l) => l['handover']), [false, false], 'no peer waits for a handover from it')
  for (const ch of theirs) {
    const ack = await watcher.call({ op: 'pub', ch, data: 'after' })
    t.equal(ack.op, 'ack', `${ch} publishes after the death`)
    t.equal(ack['seq'], last.get(ch)! + 1, `${ch}: the backup goes on with the same sequence`)
  }
  await waitFor('the watcher saw the messages after', () => theirs.every((ch) => watcher.messages(ch).length === 2), 20_000)
  for (const ch of theirs) t.same(watcher.messages(ch).map((f) => f['data']), ['before', 'after'], `${ch}: every message once, no reset`)
  t.notOk(watcher.frames.some((f) => f.op === 'sub-ok' && f['recovered'] === false), 'no subscriber was reset')

  const resumed = await connectLive(t, b.port, { token: tok })
  for (const ch of theirs) {
    const ok = await resumed.call({ op: 'sub', ch, since: last.get(ch)! - 1 })
    t.equal(ok['recovered'], true, `${ch}: a resume from before the death recovers`)
  }
  await waitFor('the replacement child', () => childPeersOf(b).length === 2 && !childPeersOf(b).includes(victim), 20_000)
  t.notOk(childPeersOf(b).includes(victim), 'the dead child is no peer any more')
  t.ok(childPeersOf(b).some((p) => p.startsWith(victim.split('.')[0]!) && p !== victim), 'its replacement has the same index and a new pid')
  watcher.close()
  resumed.close()
})

t.test('SIGHUP replaces every child of a node while publishes go on: each hands its channels over, nothing is lost or reset', async (t) => {
  const homes = tableOf(allPeers())
  const onB = CHANNELS.filter((ch) => childPeersOf(b).includes(homes.pick(ch)!.id))
  const watcher = await connectLive(t, a.port, { token: tok })
  const publisher = await connectLive(t, a.port, { token: tok })
  const start = new Map<string, number>()
  for (const ch of onB) start.set(ch, (await watcher.call({ op: 'sub', ch }))['seq'] as number)
  const oldPeers = childPeersOf(b)
  let stop = false
  const acked: Record<string, number[]> = Object.fromEntries(onB.map((ch) => [ch, []]))
  const publishing = (async () => {
    for (let i = 0; !stop; i++) {
      for (const ch of onB) {
        const id = `${ch}-${i}`
        // A publish cut by a home that moved is sent again with its publish id (answered once whatever the tries).
        for (let attempt = 0; ; attempt++) {
          const answer = await publisher.call({ op: 'pub', ch, data: i, id })
          if (answer.op === 'ack') {
            acked[ch]!.push(answer['seq'] as number)
            break
          }
          t.ok(attempt < 20, `${id} is acknowledged in the end (${JSON.stringify(answer)})`)
          if (attempt >= 20) return
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
    }
  })()
  await waitFor('publishes before the reload', () => onB.every((ch) => acked[ch]!.length >= 3), 20_000)
  const logsBefore = b.logs.length
  b.proc.kill('SIGHUP')
  await waitFor('both children replaced', () => childPeersOf(b).length === 2 && childPeersOf(b).every((p) => !oldPeers.includes(p)), 30_000)
  await waitFor('publishes after the reload', () => onB.every((ch) => acked[ch]!.length >= 20), 20_000)
  stop = true
  await publishing
  for (const ch of onB) {
    const seqs = acked[ch]!
    t.same(seqs, Array.from({ length: seqs.length }, (_, i) => start.get(ch)! + 1 + i), `${ch}: ${seqs.length} publishes acknowledged, one sequence`)
    await waitFor(`${ch}: every message delivered`, () => watcher.messages(ch).length >= seqs.length, 20_000)
    t.same(watcher.messages(ch).map((f) => f['seq']), seqs, `${ch}: every acknowledged message delivered once, in order`)
  }
  t.notOk(watcher.frames.some((f) => f.op === 'sub-ok' && f['recovered'] === false), 'no subscriber was reset')
  t.notOk(b.logs.slice(logsBefore).some((l) => l.msg === 'live: a child that homed channels exited without handing them over: their backups take over'), 'every old child left the table before it exited')
  t.notOk(tables.some((x) => x.lost?.some((id) => oldPeers.includes(id))), 'no table named a child that left lost')
  const leaving = a.logs.filter((l) => l.msg === 'live: a node left the routing table' && oldPeers.includes(l['node'] as string))
  t.ok(leaving.length > 0 && leaving.every((l) => l['handover'] === true), 'the peers wait for the handovers of the children that left')
  watcher.close()
  publisher.close()
})

t.test('no seed: the children home the channels among themselves, one sequence whichever child a connection is on', async (t) => {
  const alone = await startNode(t, 'live', { 'live-homes': 'children', children: 2, seed: `127.0.0.1:${await freePort()}` })
  t.teardown(() => alone.stop())
  await waitFor('both children applied the parent\'s table of their peers', () => new Set(alone.logs.filter((l) => l.msg === 'live: routing table applied' && l['peers'] === 2 && l['listed'] === true).map((l) => l.pid)).size === 2, 20_000)
  const clients: LiveClient[] = []
  for (let i = 0; i < 4; i++) clients.push(await connectLive(t, alone.port, { token: tok }))
  await checkOrderedFanout(t, clients, POOL.slice(0, 8), alone.port, tok, 5)
  for (const c of clients) c.close()
})
