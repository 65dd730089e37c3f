// The admin API's routes over data against a real seed and admin node: task dead letters and their retry, vhost
// mappings set, listed and removed, Live and upload tokens minted (and checked with the cluster's keys), inbound
// mail, and an outbound message queued with the CLI then held, released and dropped over HTTP. Each action is in
// the audit log, refusals included.
import t from 'tap'
import { deriveTokenKey, verifyToken } from '../../../lib/live/token.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { newTask } from '../../../lib/tasks/task.js'
import { deriveUploadKey, verifyUploadToken } from '../../../lib/uploads/token.js'
import { startAdminApi } from '../../helpers/admin-api.js'
import { SECRET, waitFor } from '../../helpers/cluster.js'
import { client } from '../../helpers/seed.js'
import { runCli } from '../../helpers/up.js'

const c = await startAdminApi(t)
await waitFor('the admin node linked to the seed', async () => (await c.api('GET', '/api/status')).status === 200 || undefined)
const seedLink = client(t, c.metaPort)
await seedLink.ready
const ds = createDatastoreClient(seedLink)
const cli = (...args: string[]) => runCli(['admin', ...args, '--seed', c.seedAddress], { env: { ...process.env, ESPRA_SECRET: SECRET } })
const latestAudit = async (n: number) => (await c.api('GET', `/api/audit?limit=${n}`)).json.entries

t.test('GET /api/tasks (?dead=1&limit=) and POST /api/tasks/:id/retry', async (t) => {
  const queue = createMetaTaskQueue(seedLink)
  const id = await queue.enqueue(newTask('report.build', { n: 1 }, { attempts: 1 }))
  const [leased] = await queue.lease({ max: 1, leaseMs: 10_000 })
  t.equal(leased!.id, id)
  await queue.settle([{ id, attempt: 1, result: 'failed', error: 'boom', retryInMs: 0 }])
  const dead = await c.api('GET', '/api/tasks?dead=1&limit=10')
  t.equal(dead.status, 200)
  t.match(dead.json, { backend: 'embedded', counts: { dead: 1, ready: 0 }, dead: [{ id, name: 'report.build', error: 'boom' }] })
  t.notOk('dead' in (await c.api('GET', '/api/tasks')).json, 'no dead letters unless asked')
  const retried = await c.api('POST', `/api/tasks/${id}/retry`)
  t.equal(retried.status, 200)
  t.same(retried.json, { id })
  t.match((await c.api('GET', '/api/tasks')).json.counts, { ready: 1, dead: 0 })
  const again = await c.api('POST', `/api/tasks/${id}/retry`)
  t.equal(again.status, 404)
  t.equal(again.json.code, 'ESPRA_ERR_TASK_NOT_FOUND')
  t.match(await latestAudit(2), [{ action: 'task.retry', target: id, outcome: 'ESPRA_ERR_TASK_NOT_FOUND' }, { action: 'task.retry', target: id, outcome: 'ok' }])
})

t.test('DELETE /api/tasks/:id deletes a dead letter, never a ready task', async (t) => {
  const queue = createMetaTaskQueue(seedLink)
  // The task the test above retried is ready: run it, so the leases below take only this test's tasks.
  const left = await queue.lease({ max: 10, leaseMs: 10_000 })
  t.same(await queue.settle(left.map((l) => ({ id: l.id, attempt: l.attempt, result: 'done' as const }))), [])
  const id = await queue.enqueue(newTask('report.drop', { n: 2 }, { attempts: 1 }))
  const [leased] = await queue.lease({ max: 1, leaseMs: 10_000 })
  t.equal(leased!.id, id)
  await queue.settle([{ id, attempt: 1, result: 'failed', error: 'boom', retryInMs: 0 }])
  const ready = await queue.enqueue(newTask('report.keep', { n: 3 }))
  const before = (await c.api('GET', '/api/tasks')).json.counts
  const notDead = await c.api('DELETE', `/api/tasks/${ready}`)
  t.equal(notDead.status, 404, 'a ready task is no dead letter')
  t.equal(notDead.json.code, 'ESPRA_ERR_TASK_NOT_FOUND')
  const deleted = await c.api('DELETE', `/api/tasks/${id}`)
  t.equal(deleted.status, 200)
  t.same(deleted.json, { id, deleted: true })
  t.match((await c.api('GET', '/api/tasks')).json.counts, { ready: before.ready, dead: before.dead - 1 }, 'the dead letter went, the ready task stayed')
  const again = await c.api('DELETE', `/api/tasks/${id}`)
  t.equal(again.status, 404)
  t.equal(again.json.code, 'ESPRA_ERR_TASK_NOT_FOUND')
  t.match(await latestAudit(3), [
    { action: 'task.delete', target: id, outcome: 'ESPRA_ERR_TASK_NOT_FOUND' }, { action: 'task.delete', target: id, outcome: 'ok' },
    { action: 'task.delete', target: ready, outcome: 'ESPRA_ERR_TASK_NOT_FOUND' },
  ])
  const bad = await c.api('DELETE', '/api/tasks/x1')
  t.equal(bad.status, 400, 'a malformed id')
  t.equal(bad.json.code, 'ESPRA_ERR_ADMIN_BAD_REQUEST')
  const viewer = await c.api('DELETE', `/api/tasks/${ready}`, { token: c.tokens.viewer })
  t.equal(viewer.status, 403, 'a viewer may not delete, as it may not retry')
  const [kept] = await queue.lease({ max: 1, leaseMs: 10_000 })
  t.equal(kept?.id, ready, 'the ready task is still there')
  await queue.settle([{ id: ready, attempt: 1, result: 'done' }])
})

t.test('PUT /api/vhosts, GET /api/vhosts[?host=], DELETE /api/vhosts', async (t) => {
  const sha = 'ab'.repeat(32)
  const missing = await c.api('PUT', '/api/vhosts', { body: { host: 'Example.TEST', path: '/index.html', file: `files/${sha}` } })
  t.equal(missing.status, 404)
  t.equal(missing.json.code, 'ESPRA_ERR_VHOST_FILE_MISSING')
  await ds.put('files', sha, { key: `files/${sha}`, size: 5, sha256: sha, type: 'text/html', encoding: null, storedAt: 1 })
  const set = await c.api('PUT', '/api/vhosts', { body: { host: 'Example.TEST', path: '/index.html', file: `files/${sha}` } })
  t.equal(set.status, 200)
  t.match(set.json, { mapping: { host: 'example.test', path: '/index.html', file: `files/${sha}`, type: 'text/html', size: 5 }, previous: null })
  await c.api('PUT', '/api/vhosts', { body: { host: 'other.test', path: '/about.html', file: `files/${sha}` } })
  t.same((await c.api('GET', '/api/vhosts')).json.map((m: { host: string; path: string }) => `${m.host}${m.path}`).sort(), ['example.test/index.html', 'other.test/about.html'])
  t.same((await c.api('GET', '/api/vhosts?host=example.test')).json.map((m: { path: string }) => m.path), ['/index.html'])
  const shadow = await c.api('PUT', '/api/vhosts', { body: { host: 'localhost', path: '/index.html', file: `files/${sha}` } })
  t.equal(shadow.status, 409, 'a host of the cluster itself needs force')
  t.equal(shadow.json.code, 'ESPRA_ERR_VHOST_SHADOWS')
  const rm = await c.api('DELETE', '/api/vhosts', { body: { host: 'example.test', path: '/index.html' } })
  t.equal(rm.status, 200)
  t.same(rm.json, { removed: 1 })
  const rmAll = await c.api('DELETE', '/api/vhosts', { body: { host: 'other.test' } })
  t.same(rmAll.json, { removed: 1 })
  const gone = await c.api('DELETE', '/api/vhosts', { body: { host: 'other.test' } })
  t.equal(gone.status, 404)
  t.equal(gone.json.code, 'ESPRA_ERR_VHOST_NOT_FOUND')
  t.same((await c.api('GET', '/api/vhosts')).json, [])
  t.match(await latestAudit(4), [
    { action: 'vhost.rm', target: 'other.test', outcome: 'ESPRA_ERR_VHOST_NOT_FOUND' },
    { action: 'vhost.rm', target: 'other.test', outcome: 'ok' },
    { action: 'vhost.rm', target: 'example.test/index.html', outcome: 'ok' },
    { action: 'vhost.set', target: 'localhost/index.html', outcome: 'ESPRA_ERR_VHOST_SHADOWS' },
  ])
})

t.test('POST /api/tokens/live and /api/tokens/upload mint tokens the cluster accepts; the audit log keeps no token', async (t) => {
  const live = await c.api('POST', '/api/tokens/live', { body: { sub: ['chat:*'], pub: ['chat:lobby'], ttl: '5m', user: 'ann', info: { name: 'Ann' } } })
  t.equal(live.status, 201)
  const checked = verifyToken(deriveTokenKey(SECRET), live.json.token)
  t.match(checked, { ok: true, claims: { sub: ['chat:*'], pub: ['chat:lobby'], presence: [], user: 'ann', info: { name: 'Ann' } } })
  const upload = await c.api('POST', '/api/tokens/upload', { body: { maxSize: '1MB', types: ['image/png'], ttl: 60_000, owner: 'ann' } })
  t.equal(upload.status, 201)
  const claims = verifyUploadToken(deriveUploadKey(SECRET), upload.json.token)
  t.match(claims, { ok: true, claims: { maxSize: 1024 ** 2, types: ['image/png'], owner: 'ann' } })
  t.ok(claims.ok && (await ds.get('uploadTokens', claims.claims.id)) !== null, 'its id is recorded for single use')
  const audit = await latestAudit(2)
  t.match(audit, [{ action: 'token.upload', outcome: 'ok', status: 201, params: { maxSize: 1024 ** 2, types: ['image/png'], ttlMs: 60_000 } }, { action: 'token.live', outcome: 'ok', params: { sub: ['chat:*'], ttlMs: 300_000 } }])
  t.notOk(JSON.stringify(audit).includes(live.json.token) || JSON.stringify(audit).includes(upload.json.token), 'no token in the audit log')
  const bad = await c.api('POST', '/api/tokens/live', { body: { sub: ['chat lobby'] } })
  t.equal(bad.status, 400)
  t.match(bad.json, { details: { field: 'sub' }, message: /^sub: 'chat lobby' is not a channel pattern/ })
})

t.test('mail: GET /api/mail/inbound, /api/mail/queue, /api/mail/:id and hold / release / retry / drop', async (t) => {
  t.same((await c.api('GET', '/api/mail/inbound')).json, { pending: 0, failed: 0, unqueued: 0, messages: [] })
  const missingIn = await c.api('POST', '/api/mail/inbound/m0123456789ab/retry')
  t.equal(missingIn.status, 404)
  t.equal(missingIn.json.code, 'ESPRA_ERR_MAIL_NOT_FOUND')
  const sent = await cli('mail', 'send', '--from', 'ops@example.test', '--to', 'ann@dest.test', '--subject', 'hello', '--text', 'hi')
  t.equal(sent.code, 0, sent.stderr)
  const id = sent.stdout.trim()
  const queue = await c.api('GET', '/api/mail/queue')
  t.equal(queue.status, 200)
  t.match(queue.json, [{ id, status: 'queued', from: 'ops@example.test', subject: 'hello' }])
  const [json] = JSON.parse((await cli('mail', 'queue', '--json')).stdout)
  t.same(queue.json[0], json, 'the objects `admin mail queue --json` prints')
  t.same((await c.api('GET', '/api/mail/queue?status=delivered,dropped')).json, [])
  const one = await c.api('GET', `/api/mail/${id}`)
  t.match(one.json, { id, from: 'ops@example.test', domains: { 'dest.test': { pending: ['ann@dest.test'] } } })
  t.same((await c.api('POST', `/api/mail/${id}/hold`)).json, { id, status: 'held' })
  const heldRetry = await c.api('POST', `/api/mail/${id}/retry`)
  t.equal(heldRetry.status, 409)
  t.match(heldRetry.json, { code: 'ESPRA_ERR_MAIL_STATE', message: /it is held: release it/ })
  t.same((await c.api('POST', `/api/mail/${id}/release`)).json, { id, status: 'queued' })
  t.same((await c.api('POST', `/api/mail/${id}/retry`)).json, { id, status: 'queued' })
  t.same((await c.api('POST', `/api/mail/${id}/drop`)).json, { id, status: 'dropped' })
  t.match((await c.api('GET', `/api/mail/${id}`)).json.events.map((e: { type: string }) => e.type), ['queued', 'held', 'released', 'retried', 'dropped'])
  t.match(await latestAudit(5), [
    { action: 'mail.drop', target: id, outcome: 'ok' }, { action: 'mail.retry', outcome: 'ok' }, { action: 'mail.release', outcome: 'ok' },
    { action: 'mail.retry', outcome: 'ESPRA_ERR_MAIL_STATE', status: 409 }, { action: 'mail.hold', outcome: 'ok' },
  ])
  const unknown = await c.api('GET', '/api/mail/o0000000000000000000')
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ESPRA_ERR_MAIL_NOT_FOUND')
})

t.test('GET /api/audit pages newest first with before', async (t) => {
  const first = await c.api('GET', '/api/audit?limit=3')
  t.equal(first.json.entries.length, 3)
  const next = await c.api('GET', `/api/audit?limit=3&before=${first.json.next}`)
  t.equal(next.json.entries.length, 3)
  const all = (await c.api('GET', '/api/audit?limit=6')).json.entries
  t.same([...first.json.entries, ...next.json.entries].map((e: { id: string }) => e.id), all.map((e: { id: string }) => e.id))
  const times = all.map((e: { at: number }) => e.at)
  t.same(times, [...times].sort((a, b) => b - a), 'newest first')
})
