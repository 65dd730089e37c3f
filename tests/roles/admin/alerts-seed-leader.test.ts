// The seed-leader rule (docs/alerts.md, "Rules") against real processes: two seeds on a real PostgreSQL and an
// admin node listing both; the leading seed killed with SIGKILL makes one seed-leader alert (from the old leader
// to the new, with the new epoch) that resolves by itself after --alert-leader-quiet; one embedded seed never
// alerts it (no lease, no epoch, nothing recorded).
import t from 'tap'
import { listAlerts, listProbeHistories } from '../../../lib/alerts/store.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { SEED_LEADER_KEY } from '../../../roles/admin/alerts/seed-leader.js'
import { freePort, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { FAST, killHard, seedView, startAdmin, startSeed, webhookReceiver } from '../../helpers/alert-cluster.js'
import { startPostgres } from '../../helpers/postgres.js'
import { client } from '../../helpers/seed.js'
import { testDir } from '../../helpers/temp-dir.js'

const postgres = await startPostgres(t)
const QUIET = { 'alert-leader-quiet': '3s', 'alert-group-window': '0', 'alert-flap-half-life': '1s' }

t.test('two seeds on PostgreSQL, the leader killed: one seed-leader alert that resolves by itself', async (t) => {
  const url = await postgres.createDatabase()
  const ports = [await freePort(), await freePort()]
  const blobDir = testDir('espra-alert-leader-blobs-')
  const common = { datastore: url, 'seed-lease': '2s', 'blob-dir': blobDir, children: 1, 'seed-grace': '8s', ...FAST }
  const seeds: Record<string, StartedNode> = {}
  for (const [i, id] of ['seed-a', 'seed-b'].entries()) {
    seeds[id] = await startNode(t, 'seed', { ...common, 'node-id': id, 'meta-port': ports[i]!, seed: `127.0.0.1:${ports[i]!}` })
  }
  const hook = await webhookReceiver(t)
  const c = client(t, ports, { reconnect: true, backoffMaxMs: 300 })
  await c.ready
  const datastore = createDatastoreClient(c)
  const admin = await startAdmin(t, ports.map((p) => `127.0.0.1:${p}`).join(','), hook.url, QUIET)
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'alerts evaluated')
  const before = await waitFor('the leader the admin node saw', async () => {
    const seen = (await datastore.get('alerts', SEED_LEADER_KEY)) as { epoch: number; holder: string | null } | null
    return seen?.holder ? seen : undefined
  })
  t.comment(`leader before: ${before.holder} (epoch ${before.epoch})`)

  await killHard(seeds[before.holder!]!)
  const opened = await waitFor('the seed-leader alert', () => hook.taken().find((n) => n.alert.rule === 'seed-leader'), 30_000)
  const other = before.holder === 'seed-a' ? 'seed-b' : 'seed-a'
  t.match(opened, { event: 'opened', alert: { rule: 'seed-leader', node: null, details: { from: before.holder, changes: 1 } } })
  t.ok((opened.alert.details['epoch'] as number) > before.epoch, `a newer epoch (${String(opened.alert.details['epoch'])})`)
  t.match(opened.alert.summary, new RegExp(`^seed leader changed: ${before.holder} → (${other}|unknown yet) \\(epoch \\d+\\)$`))

  const resolved = await waitFor('it resolves by itself', () => hook.taken().find((n) => n.alert.rule === 'seed-leader' && n.event === 'resolved'), 30_000)
  t.equal(resolved.alert.id, opened.alert.id, 'the same incident')
  t.ok(resolved.alert.resolvedAt! - opened.alert.openedAt >= 3000, 'not before the quiet period')
  t.same(hook.taken().filter((n) => n.alert.rule === 'seed-leader').map((n) => n.event), ['opened', 'resolved'], 'one alert, one resolve')
  // The engine persists the record after it hands the notification to the sink (both asynchronous): wait for the write.
  const record = await waitFor('the resolve recorded', async () => (await listAlerts(datastore)).alerts.find((a) => a.rule === 'seed-leader' && a.state === 'resolved'))
  t.match(record, { state: 'resolved', details: { to: other } })
})

t.test('one embedded seed: no seed-leader alert, nothing recorded', async (t) => {
  const { metaPort, address } = await startSeed(t)
  const hook = await webhookReceiver(t)
  const view = await seedView(t, metaPort)
  const admin = await startAdmin(t, address, hook.url, QUIET)
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'alerts evaluated')
  // Ten probe rounds (of the admin node itself, the one node here): each asked the seed who leads.
  await waitFor('ten probe rounds', async () => ((await listProbeHistories(view.datastore, 'admin-1'))[0]?.results.length ?? 0) >= 10 || undefined, 30_000)
  t.equal(await view.datastore.get('alerts', SEED_LEADER_KEY), null, 'no leader recorded')
  t.same((await listAlerts(view.datastore)).alerts.filter((a) => a.rule === 'seed-leader'), [], 'no seed-leader alert')
  t.same(hook.taken(), [], 'nothing notified')
})
