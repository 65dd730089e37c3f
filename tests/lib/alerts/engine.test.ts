// The alert engine on its own, with explicit times: one alert per incident, grouping within the window,
// flapping dampened to one alert, silences holding notifications back while resolves are still recorded,
// and a restart that neither alerts open incidents again nor forgets them.
import t from 'tap'
import type { AlertNotification, AlertRecord, Condition, Silence } from '../../../lib/alerts/alert.js'
import { createAlertEngine } from '../../../lib/alerts/engine.js'

const HALF = 10_000

function setup(groupWindowMs = 0) {
  const sent: AlertNotification[] = []
  const saved = new Map<string, AlertRecord>()
  const engine = createAlertEngine({ groupWindowMs, halfLifeMs: HALF, save: (a) => void saved.set(a.id, structuredClone(a)), notify: (n) => void sent.push(n) })
  return { engine, sent, saved }
}

const down = (node: string): Condition => ({ rule: 'node-down', node, summary: `node ${node} down`, details: { address: '127.0.0.1', port: 1 } })

t.test('one incident is one alert; it resolves once the condition is clear and the penalty low', async (t) => {
  const { engine, sent, saved } = setup()
  engine.evaluate([down('a')], 0)
  engine.evaluate([down('a')], 1000)
  engine.evaluate([down('a')], 2000)
  t.same(sent.map((n) => [n.event, n.alert.node, n.alert.state]), [['opened', 'a', 'open']])
  engine.evaluate([], 3000)
  t.equal(sent.length, 1, 'penalty 2 after one outage: the resolve waits under 1.5')
  // 2 · 2^(-dt/HALF) < 1.5 once dt > 0.415 half-lives
  engine.evaluate([], 3000 + 0.5 * HALF)
  t.same(sent.map((n) => n.event), ['opened', 'resolved'])
  const record = [...saved.values()][0]!
  t.equal(record.state, 'resolved')
  t.equal(record.resolvedAt, 3000 + 0.5 * HALF)
  t.same(record.notified, { opened: true, resolved: true })
  t.same(engine.open(), [])
})

t.test('nodes failing one rule within the window make one grouped alert listing them', async (t) => {
  const { engine, sent } = setup(5000)
  engine.evaluate([down('b')], 0)
  engine.evaluate([down('b'), down('a')], 1000)
  engine.evaluate([down('a'), down('b'), down('c'), { rule: 'rss', node: 'a', summary: 'rss', details: {} }], 2000)
  t.equal(sent.length, 0, 'nothing before the window ends')
  engine.evaluate([down('a'), down('b'), down('c'), { rule: 'rss', node: 'a', summary: 'rss', details: {} }], 5000)
  t.equal(sent.length, 1, 'the node-down group is due; the rss one (from 2000) is not')
  t.equal(sent[0]!.event, 'grouped')
  t.same(sent[0]!.alert.nodes, ['a', 'b', 'c'])
  t.equal(sent[0]!.alert.node, null)
  t.ok(sent[0]!.alert.grouped)
  engine.evaluate([down('a'), down('b'), down('c'), { rule: 'rss', node: 'a', summary: 'rss', details: {} }], 7000)
  t.same(sent.map((n) => [n.event, n.alert.rule]), [['grouped', 'node-down'], ['opened', 'rss']])
  // Two come back, one stays down: the grouped alert stays open until every node is clear.
  engine.evaluate([down('c')], 8000)
  engine.evaluate([down('c')], 8000 + HALF)
  t.equal(sent.filter((n) => n.event === 'resolved').length, 1, 'only the rss alert resolved')
  const open = engine.open()
  t.equal(open.length, 1)
  t.same(open[0]!.members.map((m) => [m.node, m.resolvedAt !== null]), [['a', true], ['b', true], ['c', false]])
  engine.evaluate([], 9000 + HALF)
  engine.evaluate([], 9000 + 2 * HALF)
  t.same(sent.map((n) => n.event), ['grouped', 'opened', 'resolved', 'resolved'])
})

t.test('a node flapping ten times is one alert, marked flapping, resolved once when steady', async (t) => {
  const { engine, sent } = setup()
  let now = 0
  for (let i = 0; i < 10; i++) {
    engine.evaluate([down('a')], (now += 1000))
    engine.evaluate([], (now += 1000))
  }
  t.same(sent.map((n) => n.event), ['opened'])
  const open = engine.open()
  t.equal(open.length, 1)
  t.ok(open[0]!.flapping)
  t.equal(open[0]!.changes, 19, 'every change after the opening one is counted')
  // Steady: the penalty (about 13) halves every HALF; under 1.5 after about 3.2 half-lives.
  for (let i = 1; i <= 5; i++) engine.evaluate([], now + i * HALF)
  t.same(sent.map((n) => n.event), ['opened', 'resolved'])
})

t.test('a silenced alert is not notified; its resolve is still recorded', async (t) => {
  const { engine, sent, saved } = setup()
  const silence: Silence = { id: 's1', rule: null, node: 'a', until: 100_000, by: 'ops', comment: 'maintenance', createdAt: 0 }
  engine.setSilences([silence])
  engine.evaluate([down('a'), down('b')], 0)
  t.same(sent.map((n) => n.alert.node), ['b'], 'b is not silenced')
  engine.evaluate([], 1000)
  engine.evaluate([], 1000 + HALF)
  t.same(sent.map((n) => [n.event, n.alert.node]), [['opened', 'b'], ['resolved', 'b']])
  const a = [...saved.values()].find((r) => r.node === 'a')!
  t.equal(a.state, 'resolved', 'the resolve is recorded')
  t.equal(a.silencedBy, 's1')
  t.same(a.notified, { opened: false, resolved: false })
  // An expired silence no longer matches.
  engine.evaluate([down('a')], 200_000)
  t.same(sent.at(-1)!.alert.node, 'a')
})

t.test('restored open alerts are not alerted again; they resolve when clear', async (t) => {
  const first = setup()
  first.engine.evaluate([down('a'), { rule: 'dead-letters', node: null, summary: '3 dead', details: {} }], 0)
  const open = first.engine.open()
  t.equal(open.length, 2)
  const second = setup()
  second.engine.restore(open)
  second.engine.evaluate([down('a'), { rule: 'dead-letters', node: null, summary: '3 dead', details: {} }], 5000)
  t.same(second.sent, [], 'still failing after the restart: nothing new')
  second.engine.evaluate([down('a')], 6000)
  t.same(second.sent.map((n) => [n.event, n.alert.rule]), [['resolved', 'dead-letters']])
  t.same(second.engine.open().map((a) => a.id), [open.find((a) => a.rule === 'node-down')!.id])
})
