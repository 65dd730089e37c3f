// Vhost files end to end with real processes: a seed and a fileserver (two children) on a real S3-protocol
// server (s3rver); files uploaded with POST /upload, mapped with `admin vhost set|rm|ls`, fetched with a vhost
// Host header. A mapping change reaches the children by the seed's vhosts.changed push, without a restart.
import { createHash } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import S3rver from 's3rver'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { deriveUploadKey, mintUploadToken } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { rawGet, sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { client } from '../../helpers/seed.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'

const BUCKET = 'espra-vhosts-test'
const s3 = new S3rver({
  address: '127.0.0.1', port: 0, silent: true, resetOnClose: true,
  directory: testDir('espra-s3rver-vhosts-'), configureBuckets: [{ name: BUCKET }],
})
const { port: s3Port } = await s3.run()
t.teardown(() => s3.close())

const metaPort = await freePort()
const seedAddress = `127.0.0.1:${metaPort}`
const flags = {
  seed: seedAddress, 'blob-store': 's3', 's3-endpoint': `http://127.0.0.1:${s3Port}`, 's3-bucket': BUCKET,
  'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s',
}
const seed = await startNode(t, 'seed', { ...flags, 'meta-port': metaPort, 'seed-grace': '0' })
const fs = await startNode(t, 'fileserver', { ...flags, 'node-id': 'fs-vhosts', children: 2 })
t.teardown(async () => {
  await fs.stop()
  await seed.stop()
})
await fs.waitForLog((l) => l.msg === 'vhost list loaded', 'fileserver loaded the (empty) vhost list')

const admin = client(t, metaPort)
await admin.ready
const uploadKey = deriveUploadKey(SECRET)
const datastore = createDatastoreClient(admin)

const HOST = 'www.example.test'
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

function fetch(path: string, host: string, headers: Record<string, string> = {}, method = 'GET'): Promise<BytesAnswer> {
  return sendForBytes({ host: '127.0.0.1', port: fs.port, path, method, headers: { host, ...headers }, agent: false })
}
const json = (a: BytesAnswer) => JSON.parse(a.body.toString('utf8')) as Record<string, unknown>

async function upload(type: string, body: Buffer): Promise<string> {
  const token = await mintUploadToken(uploadKey, datastore, { maxSize: 1024 ** 2, ttlMs: 60_000 })
  const answer = await sendForBytes({
    host: '127.0.0.1', port: fs.port, method: 'POST', path: '/upload', agent: false,
    headers: { authorization: `Bearer ${token}`, 'content-type': type, 'content-length': String(body.length) },
  }, body)
  if (answer.status !== 200) throw new Error(`upload answered ${answer.status}: ${answer.body.toString()}`)
  return json(answer)['key'] as string
}

const setMapping = (path: string, file: string) => admin.request('vhost.set', { host: HOST, path, file })
const vhost = (...args: string[]) => runCli(['admin', 'vhost', ...args, '--seed', seedAddress], { env: { ...process.env, ESPRA_SECRET: SECRET } })

const pageA = Buffer.from(`<!doctype html><h1>page A</h1>${'<p>espra vhost</p>'.repeat(50)}`)
const pageB = Buffer.from(`<!doctype html><h1>page B</h1>${'<p>espra vhost two</p>'.repeat(50)}`)
const bin = Buffer.alloc(100_000)
for (let i = 0; i < bin.length; i++) bin[i] = (i * 37 + 11) & 0xff
const keyA = await upload('text/html', pageA)
const keyB = await upload('text/html', pageB)
const keyC = await upload('application/octet-stream', bin)

/** Several fresh connections (so both children answer) all see `body` at `path`. */
async function everyoneSees(path: string, status: number, body?: Buffer): Promise<boolean> {
  const answers = await Promise.all(Array.from({ length: 8 }, () => fetch(path, HOST)))
  return answers.every((a) => a.status === status && (body === undefined || a.body.equals(body)))
}

t.test('admin vhost set, then GET with the vhost Host: the bytes, content-hash ETag, short Cache-Control', async (t) => {
  const set = await vhost('set', 'WWW.Example.Test', '/index.html', keyA)
  t.equal(set.code, 0, set.stderr)
  t.equal(set.stdout, `${HOST}/index.html -> ${keyA} (text/html, ${pageA.length} B)\n`)
  // The rest through the seed op the CLI uses (each CLI run is a process start).
  await setMapping('/c.bin', keyC)
  await setMapping('/docs/index.html', keyB.slice('files/'.length))

  const root = await waitFor('the vhost served', async () => {
    const a = await fetch('/', `${HOST}:${fs.port}`)
    return a.status === 200 && a
  })
  t.same(root.body, pageA, '/ is /index.html, sent decompressed to a client that accepts no encoding')
  t.equal(root.headers['etag'], `"${sha256(pageA)}"`)
  t.equal(root.headers['cache-control'], 'public, max-age=60')
  t.equal(root.headers['content-type'], 'text/html')
  t.equal(root.headers['content-encoding'], undefined)

  const gz = await fetch('/index.html', HOST, { 'accept-encoding': 'gzip, br' })
  t.equal(gz.status, 200)
  t.equal(gz.headers['content-encoding'], 'gzip', 'stored gzip, sent as stored')
  t.equal(gz.headers['etag'], `"${sha256(pageA)}-gz"`, 'its own tag')
  t.equal(gz.headers['vary'], 'Accept-Encoding')
  t.same(gunzipSync(gz.body), pageA)

  const docs = await fetch('/docs/', HOST)
  t.equal(docs.status, 200)
  t.same(docs.body, pageB, '/docs/ is /docs/index.html')
  t.equal((await fetch('/docs', HOST)).status, 404, 'no mapping for /docs itself')
})

t.test('a mapping change is seen after invalidation, without a restart, by every child', async (t) => {
  t.ok(await everyoneSees('/', 200, pageA), 'both children cache file A')
  const set = await vhost('set', HOST, '/index.html', keyB)
  t.equal(set.code, 0, set.stderr)
  t.match(set.stdout, `(was ${keyA})`)
  t.ok(await waitFor('every child serves file B', () => everyoneSees('/', 200, pageB)))
  const b = await fetch('/', HOST)
  t.equal(b.headers['etag'], `"${sha256(pageB)}"`, 'the tag follows the content')
  t.ok(fs.childPids().length === 2 && fs.logs.filter((l) => /^child \d+ listening$/.test(l.msg)).length === 2, 'no child was restarted')

  // Set back, so the other tests see A again.
  await setMapping('/index.html', keyA)
  t.ok(await waitFor('every child serves file A again', () => everyoneSees('/', 200, pageA)))
})

t.test('HEAD, 304, Range, 416 on a vhost file', async (t) => {
  const head = await fetch('/c.bin', HOST, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(bin.length))
  t.equal(head.body.length, 0)
  t.equal(head.headers['accept-ranges'], 'bytes')
  const etag = `"${sha256(bin)}"`
  t.equal(head.headers['etag'], etag)

  t.equal((await fetch('/c.bin', HOST, { 'if-none-match': etag })).status, 304)
  t.equal((await fetch('/c.bin', HOST, { 'if-none-match': `W/${etag}` })).status, 304, 'weak comparison')
  t.equal((await fetch('/c.bin', HOST, { 'if-modified-since': head.headers['last-modified'] as string })).status, 304)
  t.equal((await fetch('/c.bin', HOST, { 'if-none-match': '"other"' })).status, 200)

  const part = await fetch('/c.bin', HOST, { range: 'bytes=1000-1999' })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], `bytes 1000-1999/${bin.length}`)
  t.same(part.body, bin.subarray(1000, 2000))
  const tail = await fetch('/c.bin', HOST, { range: 'bytes=-10' })
  t.same(tail.body, bin.subarray(bin.length - 10))
  const past = await fetch('/c.bin', HOST, { range: `bytes=${bin.length}-` })
  t.equal(past.status, 416)
  t.equal(past.headers['content-range'], `bytes */${bin.length}`)
})

t.test('unknown paths on a vhost are 404; other methods 405', async (t) => {
  const missing = await fetch('/nope.html', HOST)
  t.equal(missing.status, 404)
  t.match(json(missing), { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: `no file /nope.html on ${HOST}` })
  t.equal((await fetch('/nope.html', HOST)).status, 404, 'again, from the negative cache')
  t.equal((await fetch(`/f/${keyA}`, HOST)).status, 404, 'a vhost has only its own paths: /f/ is not one')
  t.equal((await fetch('/app/', HOST)).status, 404)
  const post = await fetch('/upload', HOST, { 'content-length': '0' }, 'POST')
  t.equal(post.status, 405)
  t.match(json(post), { code: 'ESPRA_ERR_HTTP_METHOD' })
  t.equal((await fetch('/_espra/health', HOST)).status, 200, 'health checks answer on every Host')
})

t.test('hostile request paths on a vhost are 400 before any lookup', async (t) => {
  for (const path of ['/../etc/passwd', '/%2e%2e/etc/passwd', '/docs/%2E%2E/%2E%2E/etc/passwd', '/a%2f..%2f..%2fetc', '/index.html%00.png',
    '//etc/passwd', '/%2Fetc%2Fpasswd', '/%252e%252e/x', '/a%5c..%5cb', '/%zz', '/./index.html']) {
    t.equal(await rawGet(fs.port, path, HOST), 400, path)
  }
  t.equal(await rawGet(fs.port, `/${'x'.repeat(400)}`, HOST), 404, 'a long but well-formed path is just not mapped')
  t.equal(await rawGet(fs.port, '/index.html', HOST), 200, 'the same raw request line works for a mapped path')
})

t.test('a Host that is no vhost keeps the usual routes', async (t) => {
  const f = await fetch(`/f/${keyA}`, `127.0.0.1:${fs.port}`)
  t.equal(f.status, 200)
  t.same(f.body, pageA, '/f/<key> serves the uploaded file')
  t.equal(f.headers['cache-control'], 'public, max-age=2678400', 'with the /f/ caching')
  t.equal((await fetch('/', 'other.example.test')).status, 404)
  t.match(json(await fetch('/', 'other.example.test')), { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: 'no route for GET /' })
})

t.test('admin vhost ls, and rm: a removed path is 404 at once on every child', async (t) => {
  const ls = await vhost('ls', '--json')
  t.equal(ls.code, 0, ls.stderr)
  const listed = JSON.parse(ls.stdout) as { host: string; path: string; file: string; type: string; size: number }[]
  t.same(listed.map((m) => [m.host, m.path, m.file]), [[HOST, '/c.bin', keyC], [HOST, '/docs/index.html', keyB], [HOST, '/index.html', keyA]])
  t.match(listed[2], { type: 'text/html', size: pageA.length })
  const table = await vhost('ls', HOST)
  t.match(table.stdout, /^HOST\s+PATH\s+FILE\s+TYPE\s+SIZE\s+SET\n/)
  t.match(table.stdout, new RegExp(`^${HOST.replace(/\./g, '\\.')}\\s+/index\\.html\\s+${keyA}\\s+text/html`, 'm'))

  t.ok(await everyoneSees('/c.bin', 200, bin), 'cached by both children')
  const rm = await vhost('rm', HOST, '/c.bin')
  t.equal(rm.code, 0, rm.stderr)
  t.equal(rm.stdout, `removed 1 mapping of ${HOST}\n`)
  t.ok(await waitFor('every child answers 404', () => everyoneSees('/c.bin', 404)))
  t.equal((await fetch('/', HOST)).status, 200, 'the host\'s other paths stay')
})

t.test('admin vhost set refuses bad host names, paths and file keys (exit 2) and unknown files (exit 1)', async (t) => {
  // The rules in full are unit-tested (tests/lib/vhosts/vhost.test.ts); here, that the CLI applies them.
  const cases: [string[], RegExp][] = [
    [['set', 'bad_host.test', '/x.html', keyA], /^espra-node: host: label "bad_host" must be 1 to 63 letters.* \(got "bad_host\.test"\)/],
    [['set', `${HOST}:8080`, '/x.html', keyA], /^espra-node: host: must be a name without a port.* \(got "www\.example\.test:8080"\)/],
    [['set', HOST, '/a/../x.html', keyA], /^espra-node: path: must not have empty, "\." or "\.\." segments.* \(got "\/a\/\.\.\/x\.html"\)/],
    [['set', HOST, '/docs/', keyA], /must name a file, not end with "\/" \(a request for \/docs\/ is served from \/docs\/index\.html: map that\)/],
    [['set', HOST, '/x.html', 'files/nothex'], /^espra-node: file: must be the key an upload answered.* \(got "files\/nothex"\)/],
  ]
  const [unknown, notMapped, ...refused] = await Promise.all([
    vhost('set', HOST, '/x.html', `files/${'0'.repeat(64)}`),
    vhost('rm', HOST, '/c.bin'),
    ...cases.map(([args]) => vhost(...args)),
  ])
  refused.forEach((r, i) => {
    t.equal(r.code, 2, `exit 2: ${JSON.stringify(cases[i]![0])}`)
    t.match(r.stderr, cases[i]![1])
    t.equal(r.stderr.split('\n').length, 2, 'one line')
  })
  t.equal(unknown!.code, 1)
  t.match(unknown!.stderr, /ESPRA_ERR_VHOST_FILE_MISSING: no stored file files\/0{64}: upload it first/)
  t.equal(notMapped!.code, 1, 'rm of a path removed before')
  t.match(notMapped!.stderr, `ESPRA_ERR_VHOST_NOT_FOUND: ${HOST}/c.bin is not mapped`)
})

t.test('the seed checks every vhost.set and vhost.rm body and names the bad field', async (t) => {
  const cases: [string, unknown, string][] = [
    ['vhost.set', 'nope', 'body'],
    ['vhost.set', { host: 'UPPER.test', path: '/x', file: keyA }, 'host'],
    ['vhost.set', { host: HOST, path: '/x/', file: keyA }, 'path'],
    ['vhost.set', { host: HOST, file: keyA }, 'path'],
    ['vhost.set', { host: HOST, path: '/x', file: 'files/xyz' }, 'file'],
    ['vhost.rm', { host: 'a..b' }, 'host'],
    ['vhost.rm', { host: HOST, path: '/../x' }, 'path'],
  ]
  for (const [op, body, field] of cases) {
    const err = await admin.request(op, body).then(() => null, (e: { code: string; details?: { field?: string } }) => e)
    t.equal(err?.code, 'ESPRA_ERR_META_BAD_REQUEST', `${op} ${JSON.stringify(body)}`)
    t.equal(err?.details?.field, field)
  }
})

t.test('a fileserver started later loads the vhosts from the datastore; rm of a host ends it being a vhost', async (t) => {
  const late = await startNode(t, 'fileserver', { ...flags, 'node-id': 'fs-vhosts-late', children: 1 })
  t.teardown(() => late.stop())
  await late.waitForLog((l) => l.msg === 'vhost list loaded' && l['vhosts'] === 1, 'the late fileserver knows the vhost')
  const a = await sendForBytes({ host: '127.0.0.1', port: late.port, path: '/', headers: { host: HOST }, agent: false })
  t.equal(a.status, 200)
  t.same(a.body, pageA)

  const rm = await vhost('rm', HOST)
  t.equal(rm.code, 0, rm.stderr)
  t.equal(rm.stdout, `removed 2 mappings of ${HOST}\n`)
  t.same((await datastore.list('vhosts')).entries, [], 'no mapping and no host record left')
  const f = await waitFor('the host is no vhost any more: /f/ answers for it again', async () => {
    const answer = await fetch(`/f/${keyA}`, HOST)
    return answer.status === 200 && answer
  })
  t.same(f.body, pageA)
})
