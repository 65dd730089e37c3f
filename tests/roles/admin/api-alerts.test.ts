// The admin API's routes over alerts against a real seed and admin node: alerts the engine stored (written here
// into the seed's datastore the way the engine writes them), read and paged; silences added and lifted over HTTP
// (the operator's name recorded, viewers refused, the audit log written); sinks and probe histories listed; every
// bad parameter answered 400 or 404 with a code.
import t from 'tap'
import { newAlertId } from '../../../lib/alerts/engine.js'
import type { AlertRecord } from '../../../lib/alerts/alert.js'
import { listSilences, saveAlert } from '../../../lib/alerts/store.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { startAdminApi } from '../../helpers/admin-api.js'
import { waitFor } from '../../helpers/cluster.js'
import { client } from '../../helpers/seed.js'

const c = await startAdminApi(t)
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)
const seedLink = client(t, c.metaPort)
await seedLink.ready
const ds = createDatastoreClient(seedLink)

function alert(openedAt: number, state: 'open' | 'resolved', node: string): AlertRecord {
  return {
    id: newAlertId(openedAt), rule: 'node-down', node, nodes: [node], grouped: false, state, openedAt,
    resolvedAt: state === 'resolved' ? openedAt + 1000 : null, summary: `${node} is down`, details: {}, members: [],
    flapping: false, changes: 0, notified: { opened: true, resolved: state === 'resolved' }, silencedBy: null, updatedAt: openedAt,
  }
}

t.test('GET /api/alerts lists newest first, by state, paged; GET /api/alerts/:id', async (t) => {
  const now = Date.now()
  const older = alert(now - 60_000, 'resolved', 'live-a')
  const newer = alert(now - 1000, 'open', 'live-b')
  await saveAlert(ds, older)
  await saveAlert(ds, newer)
  const all = await c.api('GET', '/api/alerts')
  t.equal(all.status, 200)
  t.same(all.json.alerts.map((a: AlertRecord) => a.id), [newer.id, older.id])
  t.same((await c.api('GET', '/api/alerts?state=open')).json.alerts.map((a: AlertRecord) => a.id), [newer.id])
  t.same((await c.api('GET', '/api/alerts?state=resolved')).json.alerts.map((a: AlertRecord) => a.id), [older.id])
  const first = await c.api('GET', '/api/alerts?limit=1')
  t.same(first.json.alerts.map((a: AlertRecord) => a.id), [newer.id])
  t.equal(first.json.next, newer.id)
  t.same((await c.api('GET', `/api/alerts?limit=1&before=${first.json.next}`)).json.alerts.map((a: AlertRecord) => a.id), [older.id])
  t.match((await c.api('GET', `/api/alerts/${older.id}`)).json, { id: older.id, rule: 'node-down', node: 'live-a', state: 'resolved' })
  t.match(await c.api('GET', '/api/alerts?state=closed'), { status: 400, json: { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field: 'state' } } })
  t.match(await c.api('GET', '/api/alerts?before=..%2F..'), { status: 400, json: { details: { field: 'before' } } })
  t.match(await c.api('GET', '/api/alerts?colour=red'), { status: 400, json: { details: { field: 'colour' } } })
  t.match(await c.api('GET', '/api/alerts/1234'), { status: 400, json: { details: { field: 'id' } } })
  t.match(await c.api('GET', `/api/alerts/${newAlertId(1)}`), { status: 404, json: { code: 'ESPRA_ERR_ALERT_NOT_FOUND' } })
})

t.test('POST /api/silences and DELETE /api/silences/:id: the engine\'s silences, audited', async (t) => {
  const until = Date.now() + 3_600_000
  const viewer = await c.api('POST', '/api/silences', { token: c.tokens.viewer, body: { node: 'live-a', until, comment: 'disk swap' } })
  t.equal(viewer.status, 403, 'a viewer may not silence')
  const added = await c.api('POST', '/api/silences', { body: { node: 'live-a', rule: 'node-down', until: new Date(until).toISOString(), comment: 'disk swap' } })
  t.equal(added.status, 201)
  t.match(added.json, { node: 'live-a', rule: 'node-down', until, by: 'ops', comment: 'disk swap' })
  t.same((await listSilences(ds)).map((s) => s.id), [added.json.id], 'in the datastore, where the engine reads it')
  t.same((await c.api('GET', '/api/silences')).json.map((s: { id: string }) => s.id), [added.json.id])

  t.match(await c.api('POST', '/api/silences', { body: { node: 'live-a', comment: 'no expiry' } }), { status: 400, json: { details: { field: 'until' } } }, 'the expiry is mandatory')
  t.match(await c.api('POST', '/api/silences', { body: { node: 'live-a', until: Date.now() + 90 * 86_400_000 } }), { status: 400, json: { code: 'ESPRA_ERR_ALERT_SILENCE_INVALID', details: { field: 'until' } } }, 'at most 30 days')
  t.match(await c.api('POST', '/api/silences', { body: { until } }), { status: 400, json: { code: 'ESPRA_ERR_ALERT_SILENCE_INVALID', details: { field: 'matcher' } } }, 'a rule, a node or both')
  t.match(await c.api('POST', '/api/silences', { body: { rule: 'everything', until } }), { status: 400, json: { details: { field: 'matcher.rule' } } })
  t.match(await c.api('POST', '/api/silences', { body: { node: '<script>', until } }), { status: 400, json: { details: { field: 'node' } } })
  t.match(await c.api('POST', '/api/silences', { body: { node: 'live-a', until, by: 'someone else' } }), { status: 400, json: { details: { field: 'by' } } }, 'who set it is the token\'s operator')
  t.equal((await listSilences(ds)).length, 1, 'nothing stored by the refused calls')

  const removed = await c.api('DELETE', `/api/silences/${added.json.id}`)
  t.equal(removed.status, 200)
  t.same(await listSilences(ds), [])
  t.match(await c.api('DELETE', `/api/silences/${added.json.id}`), { status: 404, json: { code: 'ESPRA_ERR_ALERT_SILENCE_NOT_FOUND' } })
  t.match(await c.api('DELETE', '/api/silences/..%2Fetc'), { status: 400, json: { details: { field: 'id' } } })
  const audit = (await c.api('GET', '/api/audit?limit=4')).json.entries
  t.match(audit, [
    { action: 'silence.remove', target: null, outcome: 'ESPRA_ERR_ADMIN_BAD_REQUEST' },
    { action: 'silence.remove', target: added.json.id, outcome: 'ESPRA_ERR_ALERT_SILENCE_NOT_FOUND' },
    { action: 'silence.remove', target: added.json.id, outcome: 'ok', operator: 'ops' },
    { action: 'silence.add', outcome: 'ESPRA_ERR_ADMIN_BAD_REQUEST' },
  ])
})

t.test('GET /api/alert-sinks and GET /api/probes[?node=]', async (t) => {
  const sinks = await c.api('GET', '/api/alert-sinks')
  t.equal(sinks.status, 200)
  t.ok(Array.isArray(sinks.json), 'a list (empty without --alert-webhook)')
  const probes = await c.api('GET', '/api/probes')
  t.equal(probes.status, 200)
  t.ok(Array.isArray(probes.json))
  t.match(await c.api('GET', '/api/probes?node=a/b'), { status: 400, json: { details: { field: 'node' } } })
})
