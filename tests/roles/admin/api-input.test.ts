// Hostile input to the admin API, against a real seed and admin node: bodies that are not JSON (415), too large
// (413), malformed or with unknown or bad fields (400 naming the field), path parameters that try to leave their
// format (traversal, encoded slashes, odd characters), bad query parameters, unknown paths (404) and wrong methods
// (405 with Allow). Each refused action is audited and changes nothing.
import t from 'tap'
import { startAdminApi } from '../../helpers/admin-api.js'
import { waitFor } from '../../helpers/cluster.js'
import { rawGet } from '../../helpers/http.js'

const c = await startAdminApi(t, { 'admin-max-body': '2KB' })
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)
const maintenanceOff = async () => (await c.api('GET', '/api/maintenance')).json.state === null

t.test('bodies: JSON only (415), capped (413), parsed (400 naming body), fields checked (400 naming each)', async (t) => {
  const form = await c.api('POST', '/api/maintenance', { raw: 'until=1h', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(form.status, 415)
  t.equal(form.json.code, 'ESPRA_ERR_ADMIN_MEDIA_TYPE')
  const untyped = await c.api('POST', '/api/maintenance', { raw: '{"until":"1h"}' })
  t.equal(untyped.status, 415, 'no Content-Type is not JSON either')
  const big = await c.api('POST', '/api/maintenance', { body: { until: '1h', message: 'x'.repeat(3000) } })
  t.equal(big.status, 413)
  t.match(big.json, { code: 'ESPRA_ERR_ADMIN_BODY_TOO_LARGE', details: { limit: 2048 } })
  const chunked = await c.api('POST', '/api/maintenance', { raw: JSON.stringify({ until: '1h', message: 'y'.repeat(3000) }), headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'content-length': '' } })
  t.equal(chunked.status, 413, 'a chunked body is counted as it arrives')
  const broken = await c.api('POST', '/api/maintenance', { raw: '{"until":', headers: { 'content-type': 'application/json' } })
  t.equal(broken.status, 400)
  t.match(broken.json, { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field: 'body' }, message: /^body: is not valid JSON/ })
  const cases: [string, string, unknown, string, RegExp][] = [
    ['POST', '/api/maintenance', [1, 2], 'body', /^body: must be a JSON object$/],
    ['POST', '/api/maintenance', {}, 'until', /^until: is required/],
    ['POST', '/api/maintenance', { until: '9d' }, 'until', /^until: /],
    ['POST', '/api/maintenance', { until: 5 }, 'until', /^until: must be a duration/],
    ['POST', '/api/maintenance', { until: '1h', hosts: 'a.test' }, 'hosts', /^hosts: must be a list/],
    ['POST', '/api/maintenance', { until: '1h', colour: 'red' }, 'colour', /^colour: unknown field \(known: message, until, hosts, allow\)$/],
    ['POST', '/api/nodes/live-1/drain', { then: 'reboot' }, 'then', /^then: must be one of stop, idle/],
    ['POST', '/api/nodes/live-1/drain', { grace: '2h' }, 'grace', /^grace: must be at most 1h/],
    ['POST', '/api/nodes/live-1/drain', { force: 'yes' }, 'force', /^force: must be true or false$/],
    ['POST', '/api/rolling-restarts', { role: 'app', batch: 0 }, 'batch', /^batch: must be an integer from 1 to 1000$/],
    ['POST', '/api/rolling-restarts', { role: 'app', minHealthy: 'two' }, 'minHealthy', /^minHealthy: must be a whole number$/],
    ['PUT', '/api/vhosts', { host: 'a.test', path: '/../etc/passwd', file: `files/${'a'.repeat(64)}` }, 'path', /^path: /],
    ['PUT', '/api/vhosts', { host: '10.0.0.1', path: '/x.html', file: `files/${'a'.repeat(64)}` }, 'host', /^host: must be a host name, not an IP address/],
    ['PUT', '/api/vhosts', { host: 'a.test', path: '/x.html', file: '../secret' }, 'file', /^file: must be the key an upload answered/],
    ['DELETE', '/api/vhosts', {}, 'host', /^host: is required$/],
    ['POST', '/api/tokens/upload', { maxSize: 'huge' }, 'maxSize', /^maxSize: must be a size/],
    ['POST', '/api/tokens/upload', { maxSize: '100GB' }, 'maxSize', /^maxSize: must be from 1 byte to 64GB$/],
    ['POST', '/api/tokens/live', { ttl: 'soon' }, 'ttl', /^ttl: must be a duration/],
    ['POST', '/api/tokens/live', { info: 'x' }, 'info', /^info: must be a JSON object$/],
  ]
  for (const [method, path, body, field, message] of cases) {
    const a = await c.api(method, path, { body })
    t.equal(a.status, 400, `${method} ${path} ${JSON.stringify(body)}`)
    t.match(a.json, { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field }, message })
  }
  t.ok(await maintenanceOff(), 'nothing changed')
  const audit = (await c.api('GET', '/api/audit?limit=1000')).json.entries
  t.equal(audit.filter((e: { outcome: string }) => e.outcome === 'ESPRA_ERR_ADMIN_BAD_REQUEST').length, cases.length + 1, 'every bad request is audited')
  t.equal(audit.filter((e: { outcome: string }) => e.outcome === 'ESPRA_ERR_ADMIN_MEDIA_TYPE').length, 2)
  t.equal(audit.filter((e: { outcome: string }) => e.outcome === 'ESPRA_ERR_ADMIN_BODY_TOO_LARGE').length, 2)
  t.ok(audit.every((e: { outcome: string }) => e.outcome !== 'ok'), 'none of them did anything')
})

t.test('path parameters are checked against their formats: no traversal, no encoded slashes', async (t) => {
  const cases: [string, string, string][] = [
    ['GET', '/api/nodes/..%2F..%2Fetc', 'id'],
    ['GET', '/api/nodes/a%20b', 'id'],
    ['POST', '/api/nodes/-x/drain', 'id'],
    ['POST', '/api/builds/..%2Fb1/rollback', 'id'],
    ['POST', '/api/builds/1/rollback', 'id'],
    ['GET', '/api/builds/b0', 'id'],
    ['POST', '/api/tasks/42/retry', 'id'],
    ['GET', '/api/mail/..%2F..%2Fraw', 'id'],
    ['POST', '/api/mail/o1/drop', 'id'],
    ['POST', '/api/mail/inbound/x%2Fy/retry', 'id'],
    ['GET', '/api/rolling-restarts/..', 'id'],
  ]
  for (const [method, path, field] of cases) {
    const a = await c.api(method, path)
    t.equal(a.status, 400, `${method} ${path}`)
    t.match(a.json, { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field } }, path)
  }
  t.equal(await rawGet(c.admin.port, '/api/nodes/../status'), 401, 'a raw dot-dot path is not resolved into another route (no token: 401 first)')
})

t.test('query parameters: unknown ones and bad values are refused', async (t) => {
  const cases: [string, string][] = [
    ['/api/tasks?limit=0', 'limit'], ['/api/tasks?limit=abc', 'limit'], ['/api/tasks?limit=1001', 'limit'], ['/api/tasks?dead=maybe', 'dead'],
    ['/api/tasks?deadd=1', 'deadd'], ['/api/audit?before=../x', 'before'], ['/api/audit?limit=5000', 'limit'],
    ['/api/vhosts?host=A..B', 'host'], ['/api/mail/queue?status=lost', 'status'], ['/api/nodes?role=live', 'role'], ['/api/events?x=1', 'x'],
  ]
  for (const [path, field] of cases) {
    const a = await c.api('GET', path)
    t.equal(a.status, 400, path)
    t.match(a.json, { code: 'ESPRA_ERR_ADMIN_BAD_REQUEST', details: { field } }, path)
  }
})

t.test('unknown paths are 404 with a code; a wrong method is 405 with Allow', async (t) => {
  for (const path of ['/api', '/api/', '/api/nope', '/api/nodes/a/b/c', '/api/mail']) {
    const a = await c.api('GET', path)
    t.equal(a.status, 404, path)
    t.equal(a.json.code, 'ESPRA_ERR_HTTP_NOT_FOUND')
  }
  const cases: [string, string, string][] = [
    ['DELETE', '/api/nodes', 'GET'], ['GET', '/api/nodes/x/drain', 'POST'], ['PATCH', '/api/maintenance', 'GET, POST, DELETE'],
    ['POST', '/api/vhosts', 'GET, PUT, DELETE'], ['GET', '/api/tokens/live', 'POST'], ['POST', '/api/events', 'GET'],
  ]
  for (const [method, path, allow] of cases) {
    const a = await c.api(method, path)
    t.equal(a.status, 405, `${method} ${path}`)
    t.equal(a.json.code, 'ESPRA_ERR_HTTP_METHOD')
    t.same(String(a.headers['allow']).split(', ').sort(), allow.split(', ').sort())
  }
  t.ok(await maintenanceOff(), 'nothing changed')
})
