// The rules from one snapshot: down (evicted, suspect, N failed probes), crash-looping before degraded,
// load thresholds (0 off), task queue dead letters and backlog (level or growth), refused and stuck builds.
import t from 'tap'
import { backlogGrowing, failingConditions, type ClusterSnapshot, type RuleThresholds, type WatchedNode } from '../../../lib/alerts/rules.js'
import type { NodeView } from '../../../lib/transport/meta-shapes.js'

const T: RuleThresholds = { downAfter: 3, maxRss: 1000, maxLagMs: 100, deadLetters: 1, taskBacklog: 50, pendingUploads: 10, buildDeadlineMs: 60_000 }

const view = (id: string, over: Partial<NodeView> = {}): NodeView => ({
  id, role: 'live', region: 'us-1', address: '127.0.0.1', port: 9000, metricsPort: 0, pid: 1, version: '0', children: 1, childrenWanted: 1,
  build: null, health: 'ok', startedAt: 0, heartbeatAgeMs: 0, load: { connections: 0, rps: 0, rssBytes: 10, lagMs: 1 }, connected: true, registeredAt: 0, ...over,
})
const node = (id: string, over: Partial<WatchedNode> = {}): WatchedNode => ({ id, role: 'live', address: '127.0.0.1', port: 9000, view: view(id), gone: null, failures: 0, lastProbe: null, body: { health: 'ok' }, ...over })
const snap = (over: Partial<ClusterSnapshot>): ClusterSnapshot => ({ now: 1_000_000, nodes: [], tasks: null, readyHistory: [], build: null, seedLinkDownSince: null, seedLinkGraceMs: 30_000, ...over })
const rules = (s: ClusterSnapshot, th = T) => failingConditions(s, th).map((c) => `${c.rule}:${c.node ?? '-'}`)

t.test('node rules', async (t) => {
  t.same(rules(snap({ nodes: [node('ok')] })), [])
  t.same(rules(snap({ nodes: [node('a', { view: null, gone: 'timeout' })] })), ['node-down:a'], 'evicted')
  t.same(rules(snap({ nodes: [node('a', { view: view('a', { health: 'suspect' }) })] })), ['node-down:a'], 'link lost')
  t.same(rules(snap({ nodes: [node('a', { failures: 2 })] })), [], 'two failed probes are not three')
  const down = failingConditions(snap({ nodes: [node('a', { failures: 3, lastProbe: { at: 1, status: 0, latencyMs: 2000, ok: false, health: null, error: 'no answer within 2000 ms' }, view: view('a', { load: { connections: 0, rps: 0, rssBytes: 1e9, lagMs: 1 } }) })] }), T)
  t.same(down.map((c) => c.rule), ['node-down'], 'a down node is one condition, whatever else it fails')
  t.match(down[0]!.summary, /^node a \(live, 127\.0\.0\.1:9000\) down: 3 probes in a row failed \(no answer within 2000 ms\)$/)
  t.same(rules(snap({ nodes: [node('a', { body: { health: 'degraded', children: { crashLooping: [0] } } })] })), ['crash-loop:a'], 'crash-looping explains degraded')
  t.same(rules(snap({ nodes: [node('a', { body: { health: 'degraded', dependencies: { redis: 'ECONNREFUSED' } } })] })), ['node-health:a'])
  t.same(rules(snap({ nodes: [node('a', { view: view('a', { health: 'degraded' }) })] })), ['node-health:a'], 'the registry says degraded')
  t.same(rules(snap({ nodes: [node('a', { view: view('a', { load: { connections: 0, rps: 0, rssBytes: 2000, lagMs: 500, pendingUploads: 10 } }) })] })), ['rss:a', 'event-loop-lag:a', 'pending-uploads:a'])
  t.same(rules(snap({ nodes: [node('a', { view: view('a', { load: { connections: 0, rps: 0, rssBytes: 2000, lagMs: 500, pendingUploads: 10 } }) })] }), { ...T, maxRss: 0, maxLagMs: 0, pendingUploads: 0 }), [], '0 turns them off')
})

t.test('cluster rules', async (t) => {
  t.same(rules(snap({ tasks: { ready: 0, dead: 1 } })), ['dead-letters:-'])
  t.same(rules(snap({ tasks: { ready: 50, dead: 0 } })), ['task-backlog:-'])
  t.same(rules(snap({ tasks: { ready: 7, dead: 0 }, readyHistory: [1, 2, 3, 4, 5, 6, 7] })), ['task-backlog:-'], 'growing for 6 rounds')
  t.equal(backlogGrowing([1, 2, 3, 3, 5, 6, 7]), false, 'a flat round breaks the growth')
  t.same(rules(snap({ build: { id: 'b3', at: 0, state: 'refused', refused: [{ node: 'app-1', code: 'ESPRA_ERR_APP_INIT', message: 'init threw' }] } })), ['build-refused:-'])
  t.same(rules(snap({ build: { id: 'b3', at: 1_000_000 - 30_000, state: 'staging', refused: [] } })), [], 'staging within the deadline')
  t.same(rules(snap({ build: { id: 'b3', at: 1_000_000 - 61_000, state: 'canary', refused: [] } })), ['build-stuck:-'])
  t.same(rules(snap({ build: { id: 'b3', at: 0, state: 'live', refused: [] } })), [])
  t.same(rules(snap({ seedLinkDownSince: 1_000_000 - 29_000 })), [], 'a short loss of the seed link is not news')
  t.same(rules(snap({ seedLinkDownSince: 1_000_000 - 30_000 })), ['seed-link:-'])
})
