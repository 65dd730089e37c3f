// GET|HEAD /f/<key> end to end: a real seed and real fileserver nodes (2 children) on an S3 blob store
// (s3rver behind a counting pass-through proxy, so every blob-store GET the nodes make is counted).
import { createHash } from 'node:crypto'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { createS3BlobStore } from '../../../lib/storage/s3-blob-store.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { notifyFileChanged } from '../../../lib/transport/files-changed.js'
import { freePort, SECRET, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { startCountingS3 } from '../../helpers/counting-s3.js'
import { rawGet, sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'

const BUCKET = 'espra-files-test'
// Every request a node makes to the blob store is counted; `gets(key)` counts the object GETs of one key.
const s3 = await startCountingS3(BUCKET)
t.teardown(() => s3.close())
const endpoint = s3.endpoint
const gets = (key: string) => s3.count('GET', key)

// The test writes objects straight to s3rver (not counted).
const direct = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.direct, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
t.teardown(() => direct.close())

type Answer = BytesAnswer
function fetch(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return sendForBytes({ host: '127.0.0.1', port, path, method, headers, agent: false })
}

const raw = rawGet

const metaPort = await freePort()
const seedAddress = `127.0.0.1:${metaPort}`
const s3Flags = { 'blob-store': 's3', 's3-endpoint': endpoint, 's3-bucket': BUCKET, 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0' }
let seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...s3Flags })
t.teardown(() => seed.stop())

async function fileserver(t: Test, flags: Record<string, string | number>): Promise<StartedNode> {
  const node = await startNode(t, 'fileserver', { seed: seedAddress, children: 2, ...s3Flags, ...flags })
  t.teardown(() => node.stop())
  await waitFor('fileserver registered', async () => JSON.parse((await fetch(node.port, '/_espra/health')).body.toString())['seedConnected'] === true)
  return node
}

// /f/ serves uploaded files only (files/<sha256>): each object of this test is stored under such a key, named by a word.
const K = (name: string) => `files/${createHash('sha256').update(name).digest('hex')}`

const cacheDir = testDir('espra-files-cache-')
const text = 'hello from the blob store\n'.repeat(200)
const bin = Buffer.alloc(300_000)
for (let i = 0; i < bin.length; i++) bin[i] = (i * 31 + 7) & 0xff
await direct.put(K('hello.txt'), Buffer.from(text), { contentType: 'text/plain; charset=utf-8' })
await direct.put(K('big/one.bin'), bin, { contentType: 'application/octet-stream' })
await direct.put(K('docs/zipped.txt'), gzipSync(text), { contentType: 'text/plain', contentEncoding: 'gzip' })
const root = t
let fs = await fileserver(t, { 'cache-dir': cacheDir })

t.test('miss then hit: the second GET is served from the disk cache', async (t) => {
  const first = await fetch(fs.port, `/f/${K('hello.txt')}`)
  t.equal(first.status, 200)
  t.equal(first.body.toString(), text)
  t.equal(first.headers['content-type'], 'text/plain; charset=utf-8')
  t.match(first.headers['cache-control'], /max-age=(\d+)/)
  t.ok(Number(/max-age=(\d+)/.exec(String(first.headers['cache-control']))![1]) >= 31 * 24 * 3600, 'Cache-Control of at least a month')
  t.equal(gets(K('hello.txt')), 1)
  for (let i = 0; i < 5; i++) t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`)).body.toString(), text)
  t.equal(gets(K('hello.txt')), 1, 'hits do not reach the blob store')
  const missing = await fetch(fs.port, `/f/${K('no/such.txt')}`)
  t.equal(missing.status, 404)
  t.match(JSON.parse(missing.body.toString()), { code: 'ESPRA_ERR_HTTP_NOT_FOUND' })
})

t.test('500 concurrent requests for one uncached key: exactly one blob-store fetch', async (t) => {
  const answers = await Promise.all(Array.from({ length: 500 }, () => fetch(fs.port, `/f/${K('big/one.bin')}`)))
  t.ok(answers.every((a) => a.status === 200 && a.body.equals(bin)), 'every answer has the whole object')
  t.equal(gets(K('big/one.bin')), 1)
})

t.test('a miss is remembered until files.changed names the key', async (t) => {
  t.equal((await fetch(fs.port, `/f/${K('later.txt')}`)).status, 404)
  await direct.put(K('later.txt'), Buffer.from('now it exists'))
  for (let i = 0; i < 5; i++) t.equal((await fetch(fs.port, `/f/${K('later.txt')}`)).status, 404, 'still the remembered miss')
  t.equal(gets(K('later.txt')), 1, 'the misses did not reach the blob store again')
  const client = createMetaClient({ seeds: [seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024 ** 2, log: pino({ level: 'silent' }), reconnect: false })
  t.teardown(() => client.close())
  await new Promise<void>((resolve) => client.on('connected', resolve))
  const { subscribers } = await notifyFileChanged(client, K('later.txt'))
  t.ok(subscribers >= 1, 'the seed pushed it to the fileserver')
  // Both children and the parent get the push; wait until every try is served (no timing threshold).
  await waitFor('later.txt served', async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => fetch(fs.port, `/f/${K('later.txt')}`)))
    return all.every((a) => a.status === 200 && a.body.toString() === 'now it exists')
  })
})

t.test('an object stored gzip: as stored to gzip clients, decompressed for the others', async (t) => {
  const gz = await fetch(fs.port, `/f/${K('docs/zipped.txt')}`, { 'accept-encoding': 'gzip, br' })
  t.equal(gz.status, 200)
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.equal(gz.headers['vary'], 'Accept-Encoding')
  t.equal(gunzipSync(gz.body).toString(), text)
  const plain = await fetch(fs.port, `/f/${K('docs/zipped.txt')}`)
  t.equal(plain.status, 200)
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.body.toString(), text)
  t.not(plain.headers['etag'], gz.headers['etag'], 'each representation has its own ETag')
  const refused = await fetch(fs.port, `/f/${K('docs/zipped.txt')}`, { 'accept-encoding': 'gzip;q=0, br' })
  t.equal(refused.body.toString(), text, 'q=0 refuses gzip')
  const head = await fetch(fs.port, `/f/${K('docs/zipped.txt')}`, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-encoding'], undefined)
  t.not(head.headers['content-length'], '0', 'HEAD of the decompressed form does not claim an empty body')
  t.equal(head.headers['etag'], plain.headers['etag'])
  const headGz = await fetch(fs.port, `/f/${K('docs/zipped.txt')}`, { 'accept-encoding': 'gzip' }, 'HEAD')
  t.equal(headGz.headers['content-length'], String(gz.body.length))
  t.equal(gets(K('docs/zipped.txt')), 1)
})

t.test('Range: 206, suffix, open end, 416', async (t) => {
  const a = await fetch(fs.port, `/f/${K('big/one.bin')}`, { range: 'bytes=10-19' })
  t.equal(a.status, 206)
  t.equal(a.headers['content-range'], `bytes 10-19/${bin.length}`)
  t.ok(a.body.equals(bin.subarray(10, 20)))
  const b = await fetch(fs.port, `/f/${K('big/one.bin')}`, { range: 'bytes=-5' })
  t.equal(b.status, 206)
  t.ok(b.body.equals(bin.subarray(bin.length - 5)))
  const c = await fetch(fs.port, `/f/${K('big/one.bin')}`, { range: `bytes=${bin.length - 3}-` })
  t.ok(c.body.equals(bin.subarray(bin.length - 3)))
  const d = await fetch(fs.port, `/f/${K('big/one.bin')}`, { range: `bytes=${bin.length}-` })
  t.equal(d.status, 416)
  t.equal(d.headers['content-range'], `bytes */${bin.length}`)
  const stale = await fetch(fs.port, `/f/${K('big/one.bin')}`, { range: 'bytes=0-9', 'if-range': '"not-the-etag"' })
  t.equal(stale.status, 200, 'If-Range that does not match: the whole object')
  t.equal(stale.body.length, bin.length)
})

t.test('HEAD, and 304 on If-None-Match and If-Modified-Since', async (t) => {
  const head = await fetch(fs.port, `/f/${K('hello.txt')}`, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(Buffer.byteLength(text)))
  t.equal(head.body.length, 0)
  const etag = String(head.headers['etag'])
  const lastModified = String(head.headers['last-modified'])
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`, { 'if-none-match': etag })).status, 304)
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`, { 'if-none-match': `"x", W/${etag}` })).status, 304, 'weak comparison, lists')
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`, { 'if-none-match': '"other"' })).status, 200)
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`, { 'if-modified-since': lastModified })).status, 304)
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`, { 'if-modified-since': new Date(Date.parse(lastModified) - 3600_000).toUTCString() })).status, 200)
})

t.test('traversal in any form: 400, and nothing is read', async (t) => {
  const before = s3.total()
  for (const path of [
    '/f/../secret', '/f/a/../../etc/passwd', '/f/%2e%2e/x', '/f/%2E%2E%2Fetc%2Fpasswd', '/f/a/%2e%2e/%2e%2e/x', '/f//etc/passwd',
    '/f/%2Fetc%2Fpasswd', '/f/a%00b', '/f/a%2500', '/f/%252e%252e/x', '/f/a\\..\\b', '/f/./x', '/f/a//b', '/f/%', '/f/',
  ]) t.equal(await raw(fs.port, path), 400, path)
  t.equal(s3.total(), before, 'no blob-store request')
})

t.test('the cache survives a restart', async (t) => {
  await fs.stop()
  // Owned by the whole file, not this subtest: later subtests use it.
  fs = await fileserver(root, { 'cache-dir': cacheDir })
  t.equal((await fetch(fs.port, `/f/${K('hello.txt')}`)).body.toString(), text)
  t.ok((await fetch(fs.port, `/f/${K('big/one.bin')}`)).body.equals(bin))
  t.equal(gets(K('hello.txt')), 1, 'no new fetch after the restart')
  t.equal(gets(K('big/one.bin')), 1)
})

t.test('eviction under --cache-max-bytes: least recently served first', async (t) => {
  const dir = testDir('espra-files-small-cache-')
  // Each cache file is its object plus a metadata line of about 300 bytes: two of three 1000-byte objects fit.
  const small = await fileserver(t, { 'cache-dir': dir, 'cache-max-bytes': 2800 })
  for (const k of ['ev/a', 'ev/b', 'ev/c']) await direct.put(K(k), Buffer.alloc(1000, k.slice(-1)))
  const used = () => readdirSync(join(dir, 'objects')).reduce((n, f) => n + statSync(join(dir, 'objects', f)).size, 0)
  for (const k of ['ev/a', 'ev/b']) t.equal((await fetch(small.port, `/f/${K(k)}`)).status, 200)
  t.equal(readdirSync(join(dir, 'objects')).length, 2)
  t.equal((await fetch(small.port, `/f/${K('ev/c')}`)).body.toString(), 'c'.repeat(1000))
  t.equal(readdirSync(join(dir, 'objects')).length, 2, 'one object evicted to fit the third')
  t.ok(used() <= 2800, `cache holds ${used()} bytes, bound 2800`)
  await fetch(small.port, `/f/${K('ev/b')}`)
  t.equal(gets(K('ev/b')), 1, 'b stayed (a was least recently served)')
  await fetch(small.port, `/f/${K('ev/a')}`)
  t.equal(gets(K('ev/a')), 2, 'a was evicted and fetched again')
  // Larger than the whole cache: served straight from the store, never kept.
  const hugeBytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251))
  await direct.put(K('ev/huge'), hugeBytes)
  const huge = await fetch(small.port, `/f/${K('ev/huge')}`)
  t.equal(huge.status, 200)
  t.ok(huge.body.equals(hugeBytes))
  t.ok(used() <= 2800)
  t.notOk(readdirSync(join(dir, 'objects')).length > 2, 'not kept')
  const part = await fetch(small.port, `/f/${K('ev/huge')}`, { range: 'bytes=100-199' })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], 'bytes 100-199/5000')
  t.ok(part.body.equals(hugeBytes.subarray(100, 200)), 'Range on an object streamed straight from the store')
  const tail = await fetch(small.port, `/f/${K('ev/huge')}`, { range: 'bytes=-10' })
  t.ok(tail.body.equals(hugeBytes.subarray(4990)))
  t.equal((await fetch(small.port, `/f/${K('ev/huge')}`, { range: 'bytes=5000-' })).status, 416)
  t.equal((await fetch(small.port, `/f/${K('ev/huge')}`, { 'if-none-match': String(huge.headers['etag']) })).status, 304)
  const head = await fetch(small.port, `/f/${K('ev/huge')}`, {}, 'HEAD')
  t.equal(head.headers['content-length'], '5000')
})

t.test('the local blob store (the default under up) serves the same way', async (t) => {
  const blobDir = testDir('espra-files-local-')
  const local = await createLocalBlobStore(blobDir)
  t.teardown(() => local.close())
  await local.put(K('site/page.html'), Buffer.from('<p>local</p>'), { contentType: 'text/html' })
  const node = await startNode(t, 'fileserver', { seed: seedAddress, children: 2, 'blob-store': 'local', 'blob-dir': blobDir })
  t.teardown(() => node.stop())
  const a = await fetch(node.port, `/f/${K('site/page.html')}`)
  t.equal(a.status, 200)
  t.equal(a.headers['content-type'], 'text/html')
  t.equal(a.body.toString(), '<p>local</p>')
  t.equal((await fetch(node.port, `/f/${K('site/none.html')}`)).status, 404)
  t.equal(await raw(node.port, '/f/%2e%2e/%2e%2e/etc/passwd'), 400)
})

t.test('notifications missed while the seed was away: a fileserver forgets its misses when it subscribes again', async (t) => {
  t.equal((await fetch(fs.port, `/f/${K('while-away.txt')}`)).status, 404)
  await seed.stop()
  // Announced while no seed runs: no fileserver hears it.
  await direct.put(K('while-away.txt'), Buffer.from('made while the seed was down'))
  t.equal((await fetch(fs.port, `/f/${K('while-away.txt')}`)).status, 404, 'still the remembered miss')
  seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...s3Flags })
  await waitFor('served after the fileserver subscribed again', async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => fetch(fs.port, `/f/${K('while-away.txt')}`)))
    return all.every((a) => a.status === 200)
  }, 30_000)
  t.pass('served without a notification for the key')
})
