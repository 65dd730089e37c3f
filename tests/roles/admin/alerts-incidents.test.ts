// Against real processes and a real webhook receiver: three nodes killed at once make one grouped alert; a
// node flapping ten times alerts once; a silence added through the datastore (as the API does) keeps the
// notification back while the alert and its resolve are still recorded; an admin node restarted neither
// alerts an open incident again nor forgets it; bad option values are refused with one line and exit 2.
import t from 'tap'
import { addSilence, listAlerts, listProbeHistories } from '../../../lib/alerts/store.js'
import { runCli } from '../../helpers/up.js'
import { SECRET, waitFor } from '../../helpers/cluster.js'
import { killHard, seedView, signalAll, startAdmin, startSeed, startWatched, webhookReceiver } from '../../helpers/alert-cluster.js'

t.test('three nodes killed at once: one grouped alert listing them', async (t) => {
  const { metaPort, address } = await startSeed(t)
  const hook = await webhookReceiver(t)
  const view = await seedView(t, metaPort)
  // One after another: four nodes starting at once on two shared cores can take longer than startNode waits.
  const nodes = []
  for (const id of ['proxy-a', 'proxy-b', 'proxy-c', 'proxy-d']) nodes.push(await startWatched(t, address, id))
  const admin = await startAdmin(t, address, hook.url, { 'alert-group-window': '2s' })
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'alerts evaluated')
  await Promise.all(nodes.slice(0, 3).map(killHard))
  const grouped = await waitFor('the grouped notification', () => hook.taken().find((n) => n.event === 'grouped'), 30_000)
  t.match(grouped.alert, { rule: 'node-down', node: null, grouped: true, nodes: ['proxy-a', 'proxy-b', 'proxy-c'], state: 'open' })
  t.match(grouped.alert.summary, 'node-down on 3 nodes: proxy-a, proxy-b, proxy-c')
  // Five more probe rounds (each evaluates the rules), then count: nothing else was sent, one alert is recorded.
  const failed = async () => (await listProbeHistories(view.datastore, 'proxy-c'))[0]?.failures ?? 0
  const before = await failed()
  await waitFor('five more probe rounds', async () => (await failed()) >= before + 5 || undefined)
  t.same(hook.taken().map((n) => n.event), ['grouped'], 'one notification')
  const open = (await listAlerts(view.datastore, { state: 'open' })).alerts
  t.equal(open.length, 1)
  t.same(open[0]!.members.map((m) => m.node), ['proxy-a', 'proxy-b', 'proxy-c'])
})

t.test('a node flapping ten times alerts once (marked flapping)', async (t) => {
  const { metaPort, address } = await startSeed(t)
  const hook = await webhookReceiver(t)
  const view = await seedView(t, metaPort)
  const node = await startWatched(t, address, 'proxy-f')
  // (Lag alerts are off in startAdmin: a frozen child's event loop lags by as long as it was stopped.)
  // A long half-life: a resolve waits at least 0.42 of it (8 s), longer than one flap.
  const admin = await startAdmin(t, address, hook.url, { 'alert-flap-half-life': '20s', 'alert-group-window': '0' })
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'alerts evaluated')
  const listed = async () => (await view.nodes()).find((n) => n.id === 'proxy-f')
  for (let i = 0; i < 10; i++) {
    signalAll(node, 'SIGSTOP')
    await waitFor(`flap ${i + 1}: evicted`, async () => (await listed()) === undefined || undefined)
    signalAll(node, 'SIGCONT')
    await waitFor(`flap ${i + 1}: back`, async () => (await listed())?.health === 'ok' || undefined)
  }
  await waitFor('the opened notification', () => hook.taken().find((n) => n.event === 'opened'))
  const alerts = (await listAlerts(view.datastore)).alerts
  t.equal(alerts.length, 1, 'one alert recorded')
  t.match(alerts[0], { rule: 'node-down', node: 'proxy-f', state: 'open', flapping: true })
  t.ok(alerts[0]!.changes >= 10, `its changes are counted (${alerts[0]!.changes})`)
  t.same(hook.taken().map((n) => [n.event, n.alert.node]), [['opened', 'proxy-f']], 'one notification')
})

t.test('a silenced alert is not notified and its resolve is recorded; an admin restart neither re-alerts nor forgets', async (t) => {
  const { metaPort, address } = await startSeed(t)
  const hook = await webhookReceiver(t)
  const view = await seedView(t, metaPort)
  const quiet = await startWatched(t, address, 'proxy-q')
  const loud = await startWatched(t, address, 'proxy-l')
  const adminFlags = { 'alert-group-window': '0' }
  let admin = await startAdmin(t, address, hook.url, adminFlags)
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'alerts evaluated')

  const silence = await addSilence(view.datastore, { matcher: { rule: 'node-down', node: 'proxy-q' }, until: Date.now() + 3_600_000, by: 'test', comment: 'planned work' })
  await admin.waitForLog((l) => l.msg === 'silences in force: 1', 'the admin node has the silence')
  await killHard(quiet)
  const silenced = await waitFor('the silenced alert recorded', async () => (await listAlerts(view.datastore, { state: 'open' })).alerts.find((a) => a.node === 'proxy-q'), 30_000)
  t.match(silenced, { rule: 'node-down', silencedBy: silence.id, notified: { opened: false } })
  await startWatched(t, address, 'proxy-q', quiet.port)
  const resolved = await waitFor('its resolve recorded', async () => {
    const a = (await listAlerts(view.datastore, { state: 'resolved' })).alerts.find((x) => x.id === silenced.id)
    return a ?? undefined
  }, 30_000)
  t.match(resolved, { state: 'resolved', notified: { opened: false, resolved: false } })
  t.ok(resolved.resolvedAt! > resolved.openedAt)

  // Another node, not silenced: notified. Webhooks go out in order, so nothing about proxy-q came before.
  await killHard(loud)
  const opened = await waitFor('proxy-l notified', () => hook.taken().find((n) => n.alert.node === 'proxy-l'), 30_000)
  t.same(hook.taken().map((n) => [n.event, n.alert.node]), [['opened', 'proxy-l']], 'nothing about the silenced node')

  // The admin node restarts while proxy-l is down: the open alert is read back, not sent again.
  await admin.stop()
  admin = await startAdmin(t, address, hook.url, adminFlags)
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating' && l['open'] === 1, 'the open alert read back')
  // Three probe rounds of the new admin node while proxy-l is still down: each evaluated the rules.
  const restartedAt = Date.now()
  await waitFor('three probe rounds after the restart', async () => ((await listProbeHistories(view.datastore, 'proxy-l'))[0]?.results.filter((r) => r.at >= restartedAt && !r.ok).length ?? 0) >= 3 || undefined)
  t.same(hook.taken().length, 1, 'nothing sent again after the restart')
  await startWatched(t, address, 'proxy-l', loud.port)
  const back = await waitFor('proxy-l resolved', () => hook.taken().find((n) => n.event === 'resolved'), 30_000)
  t.equal(back.alert.id, opened.alert.id, 'the same incident resolves')
  t.same(hook.taken().map((n) => [n.event, n.alert.node]), [['opened', 'proxy-l'], ['resolved', 'proxy-l']], 'not alerted again after the restart')
})

t.test('bad option values are refused with one line and exit 2', async (t) => {
  const env = { ...process.env, ESPRA_SECRET: SECRET }
  const cases: [string[], RegExp][] = [
    [['--probe-interval=1ms'], /^espra-node: --probe-interval: must be a duration from 100ms to 3600000ms \(got "1ms"\)\n$/],
    [['--probe-interval=1s', '--probe-timeout=2s'], /^espra-node: --probe-timeout: must be at most --probe-interval \(1000ms\) \(got 2000ms\)\n$/],
    [['--alert-webhook=ftp://example.com/x'], /^espra-node: --alert-webhook: must be a comma-separated list of http:\/\/ or https:\/\/ URLs/],
    [['--alert-webhook-format=teams'], /^espra-node: --alert-webhook-format: must be one of json, slack \(got "teams"\)\n$/],
    [['--alert-webhook-secret-file=/nonexistent/key'], /^espra-node: --alert-webhook-secret-file: cannot read \/nonexistent\/key \(ENOENT\)\n$/],
    [['--alert-down-after=0'], /^espra-node: --alert-down-after: must be an integer from 1 to 100 \(got "0"\)\n$/],
  ]
  for (const [args, stderr] of cases) {
    const run = await runCli(['--role=admin', ...args], { env })
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, stderr)
  }
})
