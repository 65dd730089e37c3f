// The datastore functions the admin HTTP API calls, against the seed's real embedded store: alerts page newest
// first and by state, silences are checked (matcher, mandatory expiry within 30 days, who) and listed, sink
// states and probe histories read back.
import t, { type Test } from 'tap'
import type { AlertRecord } from '../../../lib/alerts/alert.js'
import { newAlertId } from '../../../lib/alerts/engine.js'
import {
  addSilence, getAlert, listAlerts, listProbeHistories, listSilences, listSinkStatuses, loadOpenAlerts, removeSilence, saveAlert,
  saveProbeHistory, saveSinkStatus,
} from '../../../lib/alerts/store.js'
import { openEmbeddedDatastore } from '../../../seed/datastore-embedded.js'
import { testDir } from '../../helpers/temp-dir.js'

async function store(t: Test) {
  const ds = await openEmbeddedDatastore({ dir: testDir('espra-alerts-ds-') })
  t.teardown(() => ds.close())
  return ds
}

const alert = (openedAt: number, state: 'open' | 'resolved', node = 'n1'): AlertRecord => ({
  id: newAlertId(openedAt), rule: 'node-down', node, nodes: [node], grouped: false, state, openedAt, resolvedAt: state === 'resolved' ? openedAt + 1 : null,
  summary: `node ${node} down`, details: {}, members: [], flapping: false, changes: 0, notified: { opened: true, resolved: false }, silencedBy: null, updatedAt: openedAt,
})

t.test('alerts: newest first, pages by `before`, filtered by state; the open index follows resolves', async (t) => {
  const ds = await store(t)
  const all = [1000, 2000, 3000, 4000, 5000].map((at, i) => alert(at, i % 2 === 0 ? 'open' : 'resolved', `n${i}`))
  for (const a of all) await saveAlert(ds, a)
  const first = await listAlerts(ds, { limit: 2 })
  t.same(first.alerts.map((a) => a.openedAt), [5000, 4000])
  const second = await listAlerts(ds, { limit: 2, before: first.next! })
  t.same(second.alerts.map((a) => a.openedAt), [3000, 2000])
  const last = await listAlerts(ds, { limit: 2, before: second.next! })
  t.same(last.alerts.map((a) => a.openedAt), [1000])
  t.equal(last.next, null)
  t.same((await listAlerts(ds, { state: 'open' })).alerts.map((a) => a.openedAt), [5000, 3000, 1000])
  t.same((await listAlerts(ds, { state: 'resolved' })).alerts.map((a) => a.openedAt), [4000, 2000])
  const resolved = { ...all[4]!, state: 'resolved' as const, resolvedAt: 6000 }
  await saveAlert(ds, resolved)
  t.same((await loadOpenAlerts(ds)).map((a) => a.openedAt).sort(), [1000, 3000])
  t.same(await getAlert(ds, resolved.id), resolved)
  await t.rejects(listAlerts(ds, { limit: 0 }), { code: 'ESPRA_ERR_ALERT_INVALID' })
  await t.rejects(listAlerts(ds, { state: 'closed' as 'open' }), { code: 'ESPRA_ERR_ALERT_INVALID' })
  await t.rejects(listAlerts(ds, { before: '../x' }), { code: 'ESPRA_ERR_ALERT_INVALID' })
})

t.test('silences: a matcher, an expiry in the future within 30 days, who set it', async (t) => {
  const ds = await store(t)
  const now = Date.now()
  const s = await addSilence(ds, { matcher: { rule: 'node-down', node: 'live-1' }, until: now + 60_000, by: 'ops', comment: 'replacing the disk' }, now)
  t.match(s, { rule: 'node-down', node: 'live-1', until: now + 60_000, by: 'ops', comment: 'replacing the disk', createdAt: now })
  const bad: [Parameters<typeof addSilence>[1], string][] = [
    [{ matcher: {}, until: now + 1000, by: 'ops', comment: '' }, 'matcher'],
    [{ matcher: { rule: 'cpu' }, until: now + 1000, by: 'ops', comment: '' }, 'matcher.rule'],
    [{ matcher: { node: 'a b' }, until: now + 1000, by: 'ops', comment: '' }, 'matcher.node'],
    [{ matcher: { node: 'a' }, until: now - 1, by: 'ops', comment: '' }, 'until'],
    [{ matcher: { node: 'a' }, until: now + 31 * 86_400_000, by: 'ops', comment: '' }, 'until'],
    [{ matcher: { node: 'a' }, until: now + 1000, by: ' ', comment: '' }, 'by'],
  ]
  for (const [input, field] of bad) await t.rejects(addSilence(ds, input, now), { code: 'ESPRA_ERR_ALERT_SILENCE_INVALID', details: { field } }, field)
  await addSilence(ds, { matcher: { node: 'old' }, until: now + 10, by: 'ops', comment: '' }, now)
  t.same((await listSilences(ds, {}, now + 20)).map((x) => x.id), [s.id], 'expired ones are not in force')
  t.equal((await listSilences(ds, { expired: true }, now + 20)).length, 2)
  await removeSilence(ds, s.id)
  await t.rejects(removeSilence(ds, s.id), { code: 'ESPRA_ERR_ALERT_SILENCE_NOT_FOUND' })
})

t.test('sink states and probe histories read back', async (t) => {
  const ds = await store(t)
  await saveSinkStatus(ds, { name: 'webhook 1 http://127.0.0.1:1', kind: 'webhook', pending: 2, sent: 5, dropped: 0, lastSuccessAt: 1, lastError: { at: 2, message: 'HTTP 500' }, updatedAt: 2 })
  t.match(await listSinkStatuses(ds), [{ name: 'webhook 1 http://127.0.0.1:1', pending: 2, lastError: { message: 'HTTP 500' } }])
  await saveProbeHistory(ds, { node: 'a', address: '127.0.0.1', port: 1, failures: 1, results: [{ at: 1, status: 0, latencyMs: 2, ok: false, health: null, error: 'ECONNREFUSED' }] })
  await saveProbeHistory(ds, { node: 'b', address: '127.0.0.1', port: 2, failures: 0, results: [] })
  t.same((await listProbeHistories(ds)).map((h) => h.node), ['a', 'b'])
  t.match(await listProbeHistories(ds, 'a'), [{ failures: 1, results: [{ error: 'ECONNREFUSED' }] }])
})
