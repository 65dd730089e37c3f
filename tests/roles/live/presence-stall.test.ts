// Presence when a node stops answering without closing its connections (SIGSTOP: a machine gone with no FIN, or a
// stall): no link closes, so its members leave when the seed takes it out of the routing table (--heartbeat-timeout,
// default 3 s): at once on channels homed elsewhere, after the settle where it was the home. Seen by a subscriber on
// the other node; the time from the stop to each leave is printed (the figure, not a threshold).
import t from 'tap'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { freePort, startNode } from '../../helpers/cluster.js'
import { NODE_HOMES, connectLive, token, type LiveClient } from '../../helpers/live.js'

const metaPort = await freePort()
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, seed: `127.0.0.1:${metaPort}`, 'seed-grace': '0' })
const flags = { seed: `127.0.0.1:${metaPort}`, children: 1, ...NODE_HOMES }
const a = await startNode(t, 'live', { ...flags, 'node-id': 'live-a' })
const b = await startNode(t, 'live', { ...flags, 'node-id': 'live-b' })
const stopped: number[] = []
t.teardown(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await Promise.all([a.stop(), b.stop()])
  await seed.stop()
})
for (const node of [a, b]) await node.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 2 && l['listed'] === true, 'both listed', 20_000)

const homes = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }])
const names = Array.from({ length: 100 }, (_, i) => `st:${i}`)
const homedOnA = names.find((ch) => homes.pick(ch)!.id === 'live-a')!
const homedOnB = names.find((ch) => homes.pick(ch)!.id === 'live-b')!
const as = (user: string) => token({ sub: ['*'], presence: ['*'], user })
const left = (w: LiveClient, ch: string, user: string) => w.frames.some((f) => f.op === 'presence' && f['ch'] === ch && (f['leaves'] as string[] | undefined)?.includes(user) === true)

t.test('SIGSTOP of a node: its members leave both kinds of channel once the seed drops it', async (t) => {
  const watcher = await connectLive(t, a.port, { token: as('bob') })
  const alice = await connectLive(t, b.port, { token: as('alice') })
  for (const ch of [homedOnA, homedOnB]) {
    await watcher.call({ op: 'sub', ch })
    await alice.call({ op: 'sub', ch })
    await watcher.next((f) => f.op === 'presence' && f['ch'] === ch && JSON.stringify(f['joins']).includes('alice'), `alice joins ${ch}`)
  }
  const pids = [b.proc.pid!, ...b.childPids()]
  const stoppedAt = Date.now()
  for (const pid of pids) process.kill(pid, 'SIGSTOP')
  stopped.push(...pids)
  const seen: string[] = []
  await Promise.all([
    watcher.next(() => left(watcher, homedOnA, 'alice'), 'alice leaves the channel homed on the live node', 30_000).then(() => seen.push(`home alive ${Date.now() - stoppedAt} ms`)),
    watcher.next(() => left(watcher, homedOnB, 'alice'), 'alice leaves the channel homed on the stopped node', 30_000).then(() => seen.push(`home stopped ${Date.now() - stoppedAt} ms`)),
  ])
  t.comment(`from SIGSTOP to the leave seen on the other node: ${seen.join(', ')}`)
  t.match(a.logs.find((l) => l.msg === 'live: a node left the routing table'), { node: 'live-b', handover: false }, 'the seed named the stopped node lost: no home waits for its handover')
  t.same((await watcher.call({ op: 'presence', ch: homedOnA }))['members'], [{ user: 'bob' }], 'only bob where the home is alive')
  t.same((await watcher.call({ op: 'presence', ch: homedOnB }))['members'], [{ user: 'bob' }], 'only bob at the new home')
  t.notOk(left(watcher, homedOnA, 'bob') || left(watcher, homedOnB, 'bob'), 'bob never left')
})
