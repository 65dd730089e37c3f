// Push-build over HTTP against a real cluster: a seed with a blob directory, an app node, a fileserver and an
// admin node with two children (so the three steps of a push land on either child and must find each other's
// records in the seed's datastore). A push through the API goes live on the app node and the fileserver; every
// refusal (malformed or oversized manifests, traversal, a hash not asked for, wrong bytes, too many or too few
// bytes, a commit with contents missing, a viewer, no token) is precise and stages nothing; each call is audited.
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { apiCall, startAdminOn } from '../../helpers/admin-api.js'
import { startAppCluster } from '../../helpers/app-cluster.js'
import { get, waitFor } from '../../helpers/cluster.js'
import { send } from '../../helpers/http.js'

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')

const cluster = await startAppCluster(t, { children: 1, threads: 1, 'init-timeout': '5s' })
const app = await cluster.startApp()
const fs = await cluster.startFileserver({ children: 1 })
const c = await startAdminOn(t, cluster.seedAddress, { children: 2 })
await waitFor('the admin API reaches the seed', async () => (await c.api('GET', '/api/builds')).status === 200 || undefined)

type Files = Record<string, Buffer>
const manifestOf = (files: Files) => ({ files: Object.entries(files).map(([path, bytes]) => ({ path, size: bytes.length, hash: sha(bytes) })) })
const put = (href: string, bytes: Buffer | (string | Buffer)[], token = c.tokens.operator) => apiCall(c.admin.port, 'PUT', href, { token, raw: Array.isArray(bytes) ? Buffer.concat(bytes.map((b) => Buffer.from(b))) : bytes })
const buildCount = async () => (await c.api('GET', '/api/builds')).json.builds.length
const audit = async (): Promise<{ action: string; target: string | null; outcome: string; status: number; params: unknown }[]> => (await c.api('GET', '/api/audit?limit=1000')).json.entries

/** Pushes `files` through the API: plan, upload what is missing, commit; resolves the commit's answer and the plan. */
async function push(files: Files, message: string) {
  const planned = await c.api('POST', '/api/builds', { body: { manifest: manifestOf(files), message } })
  if (planned.status !== 201) throw new Error(`plan: ${planned.status} ${planned.body}`)
  const byHash = new Map(Object.values(files).map((b) => [sha(b), b]))
  for (const m of planned.json.missing as { hash: string; href: string }[]) {
    const stored = await put(m.href, byHash.get(m.hash)!)
    if (stored.status !== 200) throw new Error(`upload: ${stored.status} ${stored.body}`)
  }
  const committed = await c.api('POST', planned.json.commit)
  return { planned, committed }
}

const big = randomBytes(1_300_000)
const v1: Files = {
  'server/index.js': Buffer.from('export function handle() { return "v1 over http" }\n'),
  'public/index.html': Buffer.from('<!doctype html><title>v1</title>'),
  'public/copy.html': Buffer.from('<!doctype html><title>v1</title>'),
  'public/big.bin': big,
}

t.test('a push over HTTP goes live on the app node and the fileserver; the same contents are not sent twice', async (t) => {
  const planned = await c.api('POST', '/api/builds', { body: { manifest: manifestOf(v1), message: 'first over http' } })
  t.equal(planned.status, 201, planned.body)
  t.match(planned.json, { upload: /^up-/, files: 4, bytes: big.length + 2 * 32 + v1['server/index.js']!.length })
  t.equal(planned.json.href, `/api/builds/uploads/${planned.json.upload}`)
  t.equal(planned.json.missing.length, 3, 'two files with the same bytes are one content')
  t.equal(planned.json.missingBytes, big.length + 32 + v1['server/index.js']!.length)
  const byHash = new Map(Object.values(v1).map((b) => [sha(b), b]))
  for (const m of planned.json.missing) {
    const stored = await put(m.href, byHash.get(m.hash)!)
    t.equal(stored.status, 200, stored.body)
    t.same(stored.json, { hash: m.hash, size: byHash.get(m.hash)!.length, stored: true })
  }
  const again = await put(planned.json.missing[0].href, byHash.get(planned.json.missing[0].hash)!)
  t.match(again.json, { stored: true, already: true }, 'an upload again: nothing sent to the seed, 200')
  const open = await c.api('GET', planned.json.href)
  t.match(open.json, { state: 'open', operator: 'ops', remaining: [] }, 'nothing left to upload')
  const committed = await c.api('POST', planned.json.commit)
  t.equal(committed.status, 202, committed.body)
  t.match(committed.json, { id: 'b1', upload: planned.json.upload, files: 4, staging: ['app-1', 'fs-1'], href: '/api/builds/b1' })
  const status = await waitFor('b1 live', async () => {
    const s = (await c.api('GET', committed.json.href)).json
    return s.state !== 'staging' ? s : undefined
  }, 30_000)
  t.equal(status.state, 'live')
  await cluster.serving(app, 'b1')
  await cluster.serving(fs, 'b1')
  t.equal((await get(app.port, '/')).body, 'v1 over http', 'the app node runs it')
  t.equal((await get(fs.port, '/app/public/copy.html')).body, '<!doctype html><title>v1</title>', 'the fileserver serves it')
  t.equal((await c.api('GET', '/api/builds')).json.builds[0].message, 'first over http')
  const twice = await c.api('POST', planned.json.commit)
  t.equal(twice.status, 409)
  t.match(twice.json, { code: 'ESPRA_ERR_ADMIN_PUSH_CLOSED', details: { build: 'b1' } })
  t.match((await c.api('GET', planned.json.href)).json, { state: 'committed', build: 'b1' })

  const v2 = { ...v1, 'server/index.js': Buffer.from('export function handle() { return "v2 over http" }\n') }
  const second = await push(v2, 'second')
  t.same(second.planned.json.missing.map((m: { hash: string }) => m.hash), [sha(v2['server/index.js'])], 'only the changed file is asked for')
  t.equal(second.committed.status, 202)
  await cluster.serving(app, 'b2')
  t.equal((await get(app.port, '/')).body, 'v2 over http')
  const entries = await audit()
  t.match(entries.find((e) => e.action === 'build.commit' && e.outcome === 'ok'), { target: second.planned.json.upload, status: 202 })
  t.match(entries.find((e) => e.action === 'build.push' && e.outcome === 'ok'), { params: { files: 4, message: 'second' }, status: 201 })
  t.match(entries.find((e) => e.action === 'build.upload' && e.outcome === 'ok'), { target: second.planned.json.upload, params: { hash: sha(v2['server/index.js']) } })
})

t.test('malformed and oversized manifests are refused with the field; nothing is planned or staged', async (t) => {
  const before = await buildCount()
  const file = { path: 'a.txt', size: 1, hash: sha('a') }
  const cases: [string, unknown, number, string, string?][] = [
    ['no manifest', { message: 'x' }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest'],
    ['no files', { manifest: { files: [] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files'],
    ['traversal', { manifest: { files: [{ ...file, path: '../../etc/passwd' }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].path'],
    ['absolute path', { manifest: { files: [{ ...file, path: '/etc/passwd' }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].path'],
    ['encoded traversal', { manifest: { files: [{ ...file, path: 'a/%2e%2e/b' }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].path'],
    ['backslash', { manifest: { files: [{ ...file, path: 'a\\..\\b' }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].path'],
    ['a path twice', { manifest: { files: [file, file] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[1].path'],
    ['bad hash', { manifest: { files: [{ ...file, hash: 'ABC' }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].hash'],
    ['file over 64 MB', { manifest: { files: [{ ...file, size: 64 * 1024 ** 2 + 1 }] } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files[0].size'],
    ['too many files', { manifest: { files: Array.from({ length: 5001 }, (_, i) => ({ ...file, path: `f${i}` })) } }, 400, 'ESPRA_ERR_BUILD_INVALID', 'manifest.files'],
    ['unknown field', { manifest: { files: [file] }, force: true }, 400, 'ESPRA_ERR_ADMIN_BAD_REQUEST', 'force'],
    ['bad canary', { manifest: { files: [file] }, canary: 'all' }, 400, 'ESPRA_ERR_ADMIN_BAD_REQUEST', 'canary'],
    ['control characters in the message', { manifest: { files: [file] }, message: 'a\u0000b' }, 400, 'ESPRA_ERR_BUILD_INVALID', 'message'],
  ]
  for (const [name, body, status, code, field] of cases) {
    const a = await c.api('POST', '/api/builds', { body })
    t.equal(a.status, status, `${name}: ${a.body.slice(0, 200)}`)
    t.equal(a.json.code, code, name)
    if (field !== undefined) t.equal(a.json.details.field, field, `${name}: names ${field}`)
  }
  const huge = await c.api('POST', '/api/builds', { body: { manifest: { files: [file] }, message: 'x'.repeat(1_100_000) } })
  t.equal(huge.status, 413)
  t.equal(huge.json.code, 'ESPRA_ERR_ADMIN_BODY_TOO_LARGE')
  t.equal(await buildCount(), before, 'nothing staged')
  const entries = (await audit()).filter((e) => e.action === 'build.push').slice(0, cases.length + 1)
  t.ok(entries.every((e) => e.outcome !== 'ok'), 'each refusal audited with its code')
})

t.test('uploads: a hash not asked for, wrong bytes, too many or too few bytes, a commit with contents missing', async (t) => {
  const before = await buildCount()
  const files: Files = { 'public/one.txt': Buffer.from(`one ${Date.now()}`), 'public/two.txt': Buffer.from(`two ${Date.now()} ${'2'.repeat(100)}`) }
  const planned = await c.api('POST', '/api/builds', { body: { manifest: manifestOf(files) } })
  t.equal(planned.status, 201)
  const [one, two] = [files['public/one.txt']!, files['public/two.txt']!]
  const href = (b: Buffer) => `${planned.json.href}/files/${sha(b)}`

  const other = Buffer.from('not in this build')
  const notAsked = await put(`${planned.json.href}/files/${sha(other)}`, other)
  t.equal(notAsked.status, 409)
  t.equal(notAsked.json.code, 'ESPRA_ERR_ADMIN_PUSH_NOT_ASKED')

  const wrong = Buffer.from(one)
  wrong[0] = wrong[0]! ^ 1
  const mismatch = await put(href(one), wrong)
  t.equal(mismatch.status, 422, mismatch.body)
  t.equal(mismatch.json.code, 'ESPRA_ERR_BUILD_HASH_MISMATCH')
  t.equal(mismatch.json.details.actual, sha(wrong))

  const longer = await put(href(one), Buffer.concat([one, Buffer.from('!')]))
  t.equal(longer.status, 400)
  t.match(longer.json, { code: 'ESPRA_ERR_ADMIN_PUSH_SIZE', details: { expected: one.length, received: one.length + 1 } }, 'Content-Length says so: refused before reading')
  // Without Content-Length (chunked), the bytes are counted as they come.
  const chunked = (body: Buffer[]) => send({ host: '127.0.0.1', port: c.admin.port, method: 'PUT', path: href(one), agent: false, headers: { authorization: `Bearer ${c.tokens.operator}` } }, body)
  const tooMany = await chunked([one, Buffer.from('more')])
  t.equal(tooMany.status, 400)
  t.match(JSON.parse(tooMany.body), { code: 'ESPRA_ERR_ADMIN_PUSH_SIZE', details: { expected: one.length } })
  const tooFew = await chunked([one.subarray(0, 3)])
  t.equal(tooFew.status, 400)
  t.match(JSON.parse(tooFew.body), { code: 'ESPRA_ERR_ADMIN_PUSH_SIZE', details: { expected: one.length, received: 3 } })
  t.same((await c.api('GET', planned.json.href)).json.remaining.map((r: { hash: string }) => r.hash).sort(), [sha(one), sha(two)].sort(), 'nothing of the refused uploads was stored')

  t.equal((await put(href(one), one)).status, 200, 'the right bytes')
  const early = await c.api('POST', planned.json.commit)
  t.equal(early.status, 409)
  t.match(early.json, { code: 'ESPRA_ERR_BUILD_MISSING_BLOBS', details: { count: 1, missing: [sha(two)] } })
  t.match((await c.api('GET', planned.json.href)).json, { state: 'open' }, 'the upload stays open')

  const badParam = await put(`${planned.json.href}/files/..%2f..%2fetc`, one)
  t.equal(badParam.status, 400)
  t.equal(badParam.json.details.field, 'sha256')
  const badId = await c.api('GET', '/api/builds/uploads/..%2fpush')
  t.equal(badId.status, 400)
  t.equal(badId.json.details.field, 'upload')
  const unknown = await put(`/api/builds/uploads/up-00000000-00000000/files/${sha(one)}`, one)
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ESPRA_ERR_ADMIN_PUSH_NOT_FOUND')

  const viewer = await put(href(two), two, c.tokens.viewer)
  t.equal(viewer.status, 403)
  t.equal(viewer.json.code, 'ESPRA_ERR_ADMIN_FORBIDDEN')
  t.equal((await c.api('POST', '/api/builds', { token: c.tokens.viewer, body: { manifest: manifestOf(files) } })).status, 403)
  t.equal((await c.api('POST', planned.json.commit, { token: c.tokens.viewer })).status, 403)
  const anonymous = await put(href(two), two, '')
  t.equal(anonymous.status, 401)
  t.equal(anonymous.json.code, 'ESPRA_ERR_ADMIN_UNAUTHORIZED')

  const abandoned = await c.api('DELETE', planned.json.href)
  t.same(abandoned.json, { upload: planned.json.upload, removed: true })
  t.equal((await put(href(two), two)).json.code, 'ESPRA_ERR_ADMIN_PUSH_NOT_FOUND', 'gone once abandoned')
  t.equal((await c.api('POST', planned.json.commit)).status, 404)
  t.equal(await buildCount(), before, 'nothing staged')

  const entries = await audit()
  const outcomes = entries.filter((e) => e.target === planned.json.upload).map((e) => `${e.action} ${e.outcome}`)
  for (const line of [
    'build.upload ESPRA_ERR_ADMIN_PUSH_NOT_ASKED', 'build.upload ESPRA_ERR_BUILD_HASH_MISMATCH', 'build.upload ESPRA_ERR_ADMIN_PUSH_SIZE',
    'build.upload ok', 'build.commit ESPRA_ERR_BUILD_MISSING_BLOBS', 'build.upload.abandon ok',
  ]) t.ok(outcomes.includes(line), `audited: ${line}`)
  // A viewer is refused before the call is read: its entry names no target.
  t.match(entries.find((e) => e.action === 'build.upload' && e.outcome === 'ESPRA_ERR_ADMIN_FORBIDDEN'), { operator: 'watcher', status: 403, target: null })
})

t.test('a dashboard session uploads with its CSRF token; another origin is refused and nothing is stored', async (t) => {
  const login = await apiCall(c.admin.port, 'POST', '/dashboard/login', { token: null, body: { token: c.tokens.operator } })
  const cookie = String(login.headers['set-cookie'] ?? '').split(';')[0]!
  const csrf = (await apiCall(c.admin.port, 'GET', '/dashboard/session', { token: null, headers: { cookie } })).json.csrf
  const bytes = Buffer.from(`csrf ${Date.now()}`)
  const planned = await c.api('POST', '/api/builds', { body: { manifest: manifestOf({ 'public/c.txt': bytes }) } })
  const href = planned.json.missing[0].href
  const own = `http://127.0.0.1:${c.admin.port}`
  const evil = await apiCall(c.admin.port, 'PUT', href, { token: null, raw: bytes, headers: { cookie, origin: 'http://evil.example', 'x-csrf-token': csrf } })
  t.equal(evil.status, 403)
  t.equal(evil.json.code, 'ESPRA_ERR_ADMIN_CSRF')
  const noToken = await apiCall(c.admin.port, 'PUT', href, { token: null, raw: bytes, headers: { cookie, origin: own } })
  t.equal(noToken.json.code, 'ESPRA_ERR_ADMIN_CSRF', 'no X-CSRF-Token: refused')
  t.equal((await c.api('GET', planned.json.href)).json.remaining.length, 1, 'nothing stored')
  const ok = await apiCall(c.admin.port, 'PUT', href, { token: null, raw: bytes, headers: { cookie, origin: own, 'x-csrf-token': csrf } })
  t.equal(ok.status, 200, ok.body)
  t.equal((await c.api('GET', planned.json.href)).json.remaining.length, 0)
  t.equal((await c.api('DELETE', planned.json.href)).status, 200)
})

t.test('Idempotency-Key: a planned push retried with its key answers the same upload', async (t) => {
  const files: Files = { 'public/k.txt': Buffer.from(`key ${Date.now()}`) }
  const headers = { 'idempotency-key': `push-${Date.now()}` }
  const first = await c.api('POST', '/api/builds', { body: { manifest: manifestOf(files) }, headers })
  const again = await c.api('POST', '/api/builds', { body: { manifest: manifestOf(files) }, headers })
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.json.upload, first.json.upload)
  await put(first.json.missing[0].href, files['public/k.txt']!)
  const commitKey = { 'idempotency-key': `commit-${Date.now()}` }
  const committed = await c.api('POST', first.json.commit, { headers: commitKey })
  t.equal(committed.status, 202)
  const replay = await c.api('POST', first.json.commit, { headers: commitKey })
  t.equal(replay.status, 202, 'the commit retried with its key: the same answer, no second build')
  t.equal(replay.json.id, committed.json.id)
  await waitFor('the build settled', async () => (await c.api('GET', committed.json.href)).json.state !== 'staging' || undefined, 30_000)
})
