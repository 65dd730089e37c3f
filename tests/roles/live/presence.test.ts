// Presence that settles, with real processes: a seed and three Live nodes at the default heartbeat settings. After
// kill -9 of a node, its members leave every channel, seen by a subscriber on another node, both where the channel's
// home survived and where the home was the node that died (its successor never knew them: the subscriber's node
// compares); members of the surviving nodes never leave. Count-only channels send the count, coalesced, never the
// joins and leaves one by one. The time from the kill to each leave is printed (the figure, not a threshold).
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode, type StartedNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type Frame, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, seed: `127.0.0.1:${metaPort}`, 'seed-grace': '0' })
const flags = { seed: `127.0.0.1:${metaPort}`, children: 1, ...NODE_HOMES, 'live-presence-count-only': 'crowd:*' }
const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => startNode(t, 'live', { ...flags, 'node-id': `live-${n}` }))) as [StartedNode, StartedNode, StartedNode]
t.teardown(async () => {
  await Promise.all([a, b, c].map((n) => n.stop()))
  await seed.stop()
})
for (const node of [a, b, c]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 3 && l['listed'] === true, 'all three listed', 20_000)

const all = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }, { id: 'live-c' }])
const after = new Rendezvous([{ id: 'live-a' }, { id: 'live-c' }])
const names = Array.from({ length: 200 }, (_, i) => `pr:${i}`)
// A channel homed on the node that dies whose next home is the third node (neither the watcher's nor the dead one's),
// and one homed on the watcher's node.
const diesWithHome = names.find((ch) => all.pick(ch)!.id === 'live-b' && after.pick(ch)!.id === 'live-c')!
const homeSurvives = names.find((ch) => all.pick(ch)!.id === 'live-a')!
const crowd = Array.from({ length: 200 }, (_, i) => `crowd:${i}`).find((ch) => all.pick(ch)!.id === 'live-b')!
const as = (user: string) => token({ sub: ['*'], presence: ['*'], user, info: { name: user } })

const presenceOf = (w: LiveClient, ch: string): Frame[] => w.frames.filter((f) => f.op === 'presence' && f['ch'] === ch && f['id'] === undefined)
const left = (w: LiveClient, ch: string, user: string) => presenceOf(w, ch).some((f) => (f['leaves'] as string[] | undefined)?.includes(user))

const watcher = await connectLive(t, a.port, { token: as('bob') })
const alice = await connectLive(t, b.port, { token: as('alice') })
const dave = await connectLive(t, c.port, { token: as('dave') })
for (const ch of [diesWithHome, homeSurvives, crowd]) await watcher.call({ op: 'sub', ch })
for (const ch of [diesWithHome, homeSurvives]) await alice.call({ op: 'sub', ch })
await dave.call({ op: 'sub', ch: diesWithHome })
// Twenty members on the count-only channel, on the node that will die and on a survivor.
const crowdOnB: LiveClient[] = []
const crowdOnC: LiveClient[] = []
for (let i = 0; i < 10; i++) {
  crowdOnB.push(await connectLive(t, b.port, { token: as(`fan-b${i}`) }))
  crowdOnC.push(await connectLive(t, c.port, { token: as(`fan-c${i}`) }))
}
await Promise.all([...crowdOnB, ...crowdOnC].map((f) => f.call({ op: 'sub', ch: crowd })))

t.test('before the kill: every member is present everywhere; the crowd is a count', async (t) => {
  await watcher.next(() => presenceOf(watcher, diesWithHome).some((f) => JSON.stringify(f['joins']).includes('dave')), 'dave joins')
  t.match(await watcher.call({ op: 'presence', ch: diesWithHome }), { count: 3 }, 'bob, alice and dave')
  t.match(await watcher.call({ op: 'presence', ch: homeSurvives }), { count: 2 }, 'bob and alice')
  const counted = await watcher.next((f) => f.op === 'presence' && f['ch'] === crowd && f['count'] === 21, 'the crowd counted: 20 fans and bob')
  t.notOk('joins' in counted, 'a count event, no joins')
  t.ok(presenceOf(watcher, crowd).every((f) => !('joins' in f) && !('leaves' in f)), 'no joins or leaves one by one on a count-only channel')
  t.ok(presenceOf(watcher, crowd).length < 21, `${presenceOf(watcher, crowd).length} count events for 21 joins: coalesced`)
  t.same(await watcher.call({ op: 'presence', ch: crowd }), { op: 'presence', ch: crowd, count: 21, members: [], id: watcher.frames.at(-1)!['id'] }, 'the answer has the count and lists nobody')
})

t.test('kill -9 of a node: its members leave every channel; nobody else does', async (t) => {
  const killedAt = Date.now()
  b.proc.kill('SIGKILL')
  for (const pid of b.childPids()) process.kill(pid, 'SIGKILL')
  const seen = new Map<string, number>()
  await Promise.all([
    watcher.next(() => left(watcher, homeSurvives, 'alice'), 'alice leaves the channel whose home survived', 30_000).then(() => seen.set('home survived', Date.now() - killedAt)),
    watcher.next(() => left(watcher, diesWithHome, 'alice'), 'alice leaves the channel whose home died', 30_000).then(() => seen.set('home died', Date.now() - killedAt)),
    watcher.next(() => presenceOf(watcher, crowd).find((f) => f['count'] === 11) !== undefined, 'the crowd count drops to 11', 30_000).then(() => seen.set('count-only', Date.now() - killedAt)),
  ])
  t.comment(`from kill -9 to the leave seen on another node: ${[...seen].map(([k, ms]) => `${k} ${ms} ms`).join(', ')}`)
  t.notOk(left(watcher, diesWithHome, 'dave'), 'dave (on a surviving node) never left')
  t.notOk(left(watcher, diesWithHome, 'bob') || left(watcher, homeSurvives, 'bob'), 'bob never left')
  t.match(await watcher.call({ op: 'presence', ch: diesWithHome }), { count: 2 }, 'the new home has bob and dave')
  t.same((await watcher.call({ op: 'presence', ch: homeSurvives }))['members'], [{ user: 'bob', info: { name: 'bob' } }], 'only bob is left where the home survived')
  t.match(await dave.call({ op: 'presence', ch: diesWithHome }), { count: 2 }, 'the same seen from the third node')
  const leaves = presenceOf(watcher, diesWithHome).flatMap((f) => (f['leaves'] as string[] | undefined) ?? [])
  t.same(leaves, ['alice'], 'alice left once')
})
