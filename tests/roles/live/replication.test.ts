// The replica side of --live-replicas 2 without the network (roles/live/replication.ts, roles/live/link.ts): which
// `repl` and `fill` a node takes, which it refuses (fencing: its table names another home), and malformed bodies.
import t from 'tap'
import { createLogger } from '../../../lib/core/log.js'
import type { MetaPeer } from '../../../lib/transport/meta-server.js'
import { Hub } from '../../../roles/live/hub.js'
import { createHomeOps, createLinkHandlers } from '../../../roles/live/link.js'
import { Replication, type Owners } from '../../../roles/live/replication.js'

const LIMITS = { historySize: 100, historyAgeMs: 60_000, historyBytes: 8 * 1024 ** 2, maxMessageBytes: 64 * 1024 }

/** This node is `backup-node`; every channel's home is `home-node` at routing version 7. */
function backupNode(owners: Owners = { home: 'home-node', backup: 'backup-node' }) {
  const hub = new Hub(LIMITS)
  const replication = new Replication({
    hub, self: 'backup-node', log: createLogger('silent', { role: 'live', node: 'backup-node' }), budget: 1024, owners: () => owners, version: () => 7, firstTable: () => Promise.resolve(),
    request: () => Promise.reject(new Error('no network in this test')),
  })
  const ops = createHomeOps(hub, replication)
  const link = createLinkHandlers(ops, hub, () => {}, replication)
  const peer = (id: string, kind: MetaPeer['kind'] = 'node') => ({ kind, id, remote: '127.0.0.1:1', nodeId: null, session: {} }) as unknown as MetaPeer
  const call = (op: string, body: unknown, from = 'home-node', kind: MetaPeer['kind'] = 'node') => link.handlers.get(op)!(body, peer(from, kind))
  return { hub, replication, call }
}

const snap = (seq: number, n = 1) => ({ seq, base: seq - n, forgottenTo: 0, trimmed: [], messages: Array.from({ length: n }, (_, i) => ({ seq: seq - n + 1 + i, ts: Date.now(), data: i })) })

t.test('a backup takes the state and then each next message from the home, and refuses a gap', async (t) => {
  const { hub, call } = backupNode()
  t.same(call('repl', { ch: 'c', version: 7, msg: { seq: 11, ts: 1, data: 'x' } }), { err: { code: 5031, message: 'needs the channel state' } }, 'a message without the state: the home sends the state')
  t.same(call('repl', { ch: 'c', version: 7, snap: snap(10, 3) }), { seq: 10 })
  t.same(call('repl', { ch: 'c', version: 7, msg: { seq: 11, ts: Date.now(), data: 'x', id: 'p-1' } }), { seq: 11 })
  t.same(call('repl', { ch: 'c', version: 7, msg: { seq: 13, ts: 1, data: 'y' } }), { err: { code: 5031, message: 'needs the channel state' } }, 'a gap: the state again')
  t.same(hub.catchup('c', 7).messages.map((m) => m.seq), [8, 9, 10, 11], 'the replica holds them in order')
})

t.test('fencing: a repl from a node that is not the home here is refused with this table\'s version and home', async (t) => {
  const { hub, call } = backupNode()
  t.match(call('repl', { ch: 'c', version: 5, snap: snap(10) }, 'stale-home'), { err: { code: 5031 }, version: 7, home: 'home-node' })
  t.equal(hub.has('c'), false, 'nothing stored')
  const notBackup = backupNode({ home: 'home-node', backup: 'other' })
  t.match(notBackup.call('repl', { ch: 'c', version: 7, snap: snap(10) }), { err: { code: 5031 }, version: 7, home: 'home-node' }, 'not this node\'s to hold: refused too')
})

t.test('fill: the state in pages to the home; a stale home\'s fill is refused, a newer one fences this node', async (t) => {
  const { hub, call } = backupNode()
  call('repl', { ch: 'c', version: 7, snap: snap(20, 10) })
  t.same(call('fill', { ch: 'none', version: 7 }), {}, 'a channel not held: nothing (it starts at the home)')
  const first = call('fill', { ch: 'c', version: 7 }) as { snap: { seq: number; messages: unknown[] }; more: boolean }
  t.equal(first.snap.messages.length, 10)
  t.match(call('fill', { ch: 'c', version: 7, after: 15 }), { messages: [{ seq: 16 }, { seq: 17 }, { seq: 18 }, { seq: 19 }, { seq: 20 }], more: false })
  t.match(call('fill', { ch: 'c', version: 6 }, 'stale-home'), { err: { code: 5031 }, version: 7 }, 'an older table that names another home: refused')
  t.ok((call('fill', { ch: 'c', version: 8 }, 'new-home') as { snap?: unknown }).snap, 'a newer table: answered')
  t.ok(hub.has('c'))
})

t.test('hand: a holder that left gives the channel to its home, which takes it only when it does not hold it', async (t) => {
  // This node is the home here (its table names it), at routing version 7.
  const { hub, call } = backupNode({ home: 'backup-node', backup: 'other' })
  t.same(call('hand', { ch: 'c', version: 7, snap: snap(10, 3), last: false }, 'leaving'), { seq: 10 }, 'not held: taken')
  t.same(call('hand', { ch: 'c', version: 7, msg: { seq: 11, ts: Date.now(), data: 'x', id: 'p-1' }, last: true }, 'leaving'), { seq: 11 }, 'then the messages that did not fit')
  t.same(hub.catchup('c', 7).messages.map((m) => m.seq), [8, 9, 10, 11], 'held in order, same sequence')
  t.match(call('hand', { ch: 'c', version: 7, snap: snap(5, 1), last: true }, 'another'), { held: true, seq: 11 }, 'already held: kept as it is')
  t.same(call('hand', { ch: 'c', version: 7, msg: { seq: 12, ts: 1, data: 'y' }, last: true }, 'another'), { held: true }, 'a message of a hand not taken: ignored')
  t.equal(hub.positions('c')!.seq, 11)
  const notHome = backupNode()
  t.match(notHome.call('hand', { ch: 'c', version: 7, snap: snap(10), last: true }, 'leaving'), { err: { code: 5031 }, version: 7, home: 'home-node' }, 'a table as new as the sender\'s that names another home: refused')
  t.ok((notHome.call('hand', { ch: 'c', version: 8, snap: snap(10), last: true }, 'leaving') as { seq?: number }).seq, 'a sender with a newer table: taken (this node will learn it is the home)')
})

t.test('a home taking a handover in several frames numbers nothing before the last one', async (t) => {
  const { call, replication, hub } = backupNode({ home: 'backup-node', backup: 'other' })
  call('hand', { ch: 'c', version: 7, snap: snap(10, 3), last: false }, 'leaving')
  let ready = false
  const waiting = replication.ready('c').then(() => (ready = true))
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.notOk(ready, 'still waiting for the rest of the handover')
  call('hand', { ch: 'c', version: 7, msg: { seq: 11, ts: Date.now(), data: 'x' }, last: true }, 'leaving')
  await waiting
  t.equal(hub.positions('c')!.seq, 11, 'the whole state first')
})

t.test('malformed repl and fill bodies are refused with a precise error; only Live nodes may send them', async (t) => {
  const { call } = backupNode()
  const bad: [string, unknown, RegExp][] = [
    ['repl', 'nope', /body must be a map/],
    ['repl', { ch: 'bad channel', version: 7, msg: { seq: 1, ts: 1 } }, /bad channel/],
    ['repl', { ch: 'c', msg: { seq: 1, ts: 1 } }, /version must be an integer/],
    ['repl', { ch: 'c', version: 7 }, /repl needs snap or msg/],
    ['repl', { ch: 'c', version: 7, msg: { seq: 1.5, ts: 1 } }, /repl needs snap or msg/],
    ['repl', { ch: 'c', version: 7, msg: { seq: 1, ts: 1, id: 'has space' } }, /repl needs snap or msg/],
    ['repl', { ch: 'c', version: 7, snap: { seq: 1, base: 0, forgottenTo: 0, trimmed: [{ to: 1, cause: 'boom' }], messages: [] } }, /snap must be/],
    ['repl', { ch: 'c', version: 7, snap: { seq: 1, base: 0, forgottenTo: 0, trimmed: [], messages: 'x' } }, /snap must be/],
    ['fill', { ch: 'c', version: 7, after: 'x' }, /after must be an integer/],
    ['hand', { ch: 'c', version: 7 }, /repl needs snap or msg/],
  ]
  for (const [op, body, message] of bad) t.match(call(op, body), { err: { code: op === 'repl' && typeof body !== 'object' ? 4003 : Number, message } }, `${op} ${JSON.stringify(body)}`)
  t.match(call('fill', { ch: 'c', version: 7 }, 'app-1', 'admin'), { err: { code: 4003, message: /for Live nodes/ } }, 'not a node: refused')
  const plain = createLinkHandlers(createHomeOps(new Hub(LIMITS)), new Hub(LIMITS), () => {})
  t.match(plain.handlers.get('repl')!({ ch: 'c' }, {} as MetaPeer), { err: { code: 4001, message: /--live-replicas 1/ } }, 'a node without replication: unknown op')
})

t.test('a home finding a channel nowhere waits for a node that left only until it says it handed everything over', async (t) => {
  const { replication, call } = backupNode({ home: 'backup-node', backup: null })
  replication.handover.nodeLeft('lost-node', false)
  t.notOk(replication.handover.expecting(), 'a node the seed lost hands nothing over: nobody waits for it')
  replication.handover.nodeLeft('old-node', true)
  t.ok(replication.handover.expecting(), 'a drained node left: its channels may be on their way')
  let ready = false
  const waiting = replication.ready('room:b').then(() => (ready = true))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(ready, 'a new channel waits for that node\'s handover')
  t.same(call('handed', {}, 'someone-else', 'admin'), { err: { code: 4003, message: 'handed is for Live nodes' } })
  t.notOk(ready)
  t.same(call('handed', {}, 'old-node'), {})
  await waiting
  t.notOk(replication.handover.expecting(), 'it said it handed everything over: nothing more is waited for')
  replication.handover.nodeLeft('old-node', true)
  t.notOk(replication.handover.expecting(), 'nor when this node applies the table without it after the notice')
})
