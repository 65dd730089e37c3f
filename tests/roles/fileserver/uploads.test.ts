// POST /upload end to end with real processes: a seed, a Live node, a fileserver (two children) whose blob
// store is a real S3-protocol server (s3rver); tokens from `admin upload-token` and lib/uploads/token.ts;
// progress heard by a real WebSocket subscriber; the S3 server stopped and restarted for pending uploads.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import S3rver from 's3rver'
import t from 'tap'
import { signClaims } from '../../../lib/live/token.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createS3BlobStore } from '../../../lib/storage/s3-blob-store.js'
import { deriveUploadKey, mintUploadToken, type UploadMintOptions } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { connectLive, token as liveToken } from '../../helpers/live.js'
import { client } from '../../helpers/seed.js'
import { BIN } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'

const BUCKET = 'espra-uploads'
const s3Dir = testDir('espra-uploads-s3-')
const s3Port = await freePort()
const s3Options = { address: '127.0.0.1', port: s3Port, silent: true, resetOnClose: false, directory: s3Dir, configureBuckets: [{ name: BUCKET }] }
let s3: S3rver | null = new S3rver(s3Options)
await s3.run()
t.teardown(() => s3?.close())
const endpoint = `http://127.0.0.1:${s3Port}`
const blobs = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
t.teardown(() => blobs.close())

const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s' }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
const live = await startNode(t, 'live', { ...fast, 'node-id': 'live-up', children: 1 })
const fsDataDir = testDir('espra-uploads-fs-')
const fs = await startNode(t, 'fileserver', {
  ...fast, 'node-id': 'fs-up', children: 2, 'data-dir': fsDataDir, 'blob-store': 's3', 's3-bucket': BUCKET, 's3-endpoint': endpoint,
})
t.teardown(async () => {
  await fs.stop()
  await live.stop()
  await seed.stop()
})
await live.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 1, 'live node listed')
await fs.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')

const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)
const key = deriveUploadKey(SECRET)
const mint = (opts: Partial<UploadMintOptions> = {}) => mintUploadToken(key, datastore, { maxSize: 1024 ** 2, ttlMs: 3_600_000, ...opts })

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
/** Whirlpool from a separate node with the legacy provider (the test runner may not load it). */
function whirlpool(b: Buffer): string {
  const out = spawnSync(process.execPath, ['--openssl-legacy-provider', '-e', "process.stdin.pipe(require('crypto').createHash('whirlpool').setEncoding('hex')).pipe(process.stdout)"], { input: b })
  return out.stdout.toString().trim()
}

interface Answer { status: number; body: Record<string, unknown> }

/** POSTs `chunks` (one write each; no Content-Length unless given, so the body goes chunked). */
function post(path: string, headers: Record<string, string>, chunks: Buffer[]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: fs.port, method: 'POST', path, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    for (const c of chunks) req.write(c)
    req.end()
  })
}

const raw = (tok: string, type: string, body: Buffer, extra: Record<string, string> = {}) =>
  post('/upload', { authorization: `Bearer ${tok}`, 'content-type': type, 'content-length': String(body.length), ...extra }, [body])

function form(field: string, filename: string, type: string, content: Buffer): { type: string; body: Buffer } {
  const boundary = `----espra${Math.random().toString(16).slice(2)}`
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ])
  return { type: `multipart/form-data; boundary=${boundary}`, body }
}

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const out = spawnSync(process.execPath, [BIN, 'admin', ...args], { env: { ...process.env, ESPRA_SECRET: SECRET } })
  return { code: out.status, stdout: out.stdout.toString(), stderr: out.stderr.toString() }
}

const tmpFiles = () => readdirSync(join(fsDataDir, 'uploads-tmp'))
async function tmpObjects(): Promise<string[]> {
  const keys: string[] = []
  for await (const e of blobs.list('uploads-tmp/')) keys.push(e.key)
  return keys
}
const pendingFiles = () => { try { return readdirSync(join(fsDataDir, 'uploads-pending')) } catch { return [] } }

t.test('raw upload with an admin upload-token: hashes, gzip in the store, record, progress on the live channel', async (t) => {
  const minted = cli(['upload-token', '--seed', `127.0.0.1:${metaPort}`, '--max-size', '2MB', '--types', 'text/plain,image/*', '--ttl', '10m', '--owner', 'u1', '--channel', 'upload:one'])
  t.equal(minted.code, 0, minted.stderr)
  const tok = minted.stdout.trim()
  t.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'the token alone on stdout')

  const sub = await connectLive(t, live.port, { token: liveToken({ sub: ['upload:*'] }) })
  t.equal((await sub.call({ op: 'sub', ch: 'upload:one' })).op, 'sub-ok')

  const content = Buffer.from('espra upload line\n'.repeat(60_000))
  const res = await post('/upload', { authorization: `Bearer ${tok}`, 'content-type': 'text/plain', 'x-filename': 'notes.txt' },
    Array.from({ length: 8 }, (_, i) => content.subarray(i * content.length / 8, (i + 1) * content.length / 8)))
  t.equal(res.status, 200, JSON.stringify(res.body))
  const hash = sha256(content)
  t.match(res.body, {
    key: `files/${hash}`, size: content.length, sha256: hash, whirlpool: whirlpool(content), type: 'text/plain',
    filename: 'notes.txt', owner: 'u1', encoding: 'gzip', url: `/f/files/${hash}`, pending: false, deduplicated: false,
  })
  const stored = await blobs.get(`files/${hash}`)
  t.equal(stored?.contentEncoding, 'gzip')
  const chunks: Buffer[] = []
  for await (const c of stored!.body) chunks.push(c as Buffer)
  const zipped = Buffer.concat(chunks)
  t.ok(zipped.length < content.length / 10, 'stored compressed')
  t.equal(sha256(gunzipSync(zipped)), hash, 'the stored bytes unzip to the upload')
  t.match(await datastore.get('files', hash), { sha256: hash, size: content.length, owner: 'u1' })

  const done = await sub.next((f) => f.op === 'msg' && (f['data'] as { t?: string })?.t === 'upload.done', 'final progress event')
  t.match(done['data'], { t: 'upload.done', sha256: hash, bytes: content.length, pending: false })
  const progress = sub.messages('upload:one').filter((f) => (f['data'] as { t: string }).t === 'upload.progress').map((f) => (f['data'] as { bytes: number }).bytes)
  t.ok(progress.length >= 1, 'progress events before the end')
  t.same(progress, [...progress].sort((a, b) => a - b), 'progress only grows')
  t.same(tmpFiles(), [], 'nothing left in the temporary directory')

  const again = await raw(tok, 'text/plain', Buffer.from('x'))
  t.equal(again.status, 403, 'a used token is refused')
  t.equal(again.body['code'], 'ESPRA_ERR_UPLOAD_TOKEN_USED')
  t.same(await tmpObjects(), [], 'the refused body left no temporary object in the store')
})

t.test('admin upload-token --inline: the token lets an active type be shown inline', async (t) => {
  const minted = cli(['upload-token', '--seed', `127.0.0.1:${metaPort}`, '--inline'])
  t.equal(minted.code, 0, minted.stderr)
  const html = Buffer.from(`<p>inline ${Date.now()}</p>`)
  const res = await raw(minted.stdout.trim(), 'text/html', html)
  t.match(res, { status: 200, body: { inline: true } })
  const served = await new Promise<Record<string, unknown>>((resolve, reject) => {
    request({ host: '127.0.0.1', port: fs.port, path: `/f/files/${sha256(html)}`, agent: false }, (r) => {
      r.resume()
      r.on('end', () => resolve(r.headers))
    }).on('error', reject).end()
  })
  t.equal(served['content-disposition'], 'inline')
  t.match(served['content-security-policy'], /sandbox/)
})

t.test('multipart form with one file field, token in the query; dedup of the same bytes', async (t) => {
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 256))])
  const f = form('file', 'pic.png', 'image/png', png)
  const tok = await mint({ types: ['image/png'] })
  const res = await post(`/upload?token=${encodeURIComponent(tok)}`, { 'content-type': f.type, 'content-length': String(f.body.length) }, [f.body])
  t.equal(res.status, 200, JSON.stringify(res.body))
  t.match(res.body, { sha256: sha256(png), whirlpool: whirlpool(png), size: png.length, type: 'image/png', filename: 'pic.png', encoding: null, deduplicated: false })
  const head = await blobs.head(`files/${sha256(png)}`)
  t.equal(head?.contentEncoding, null, 'images are stored as they are')
  t.equal(head?.size, png.length)

  const second = await raw(await mint(), 'image/png', png)
  t.equal(second.status, 200)
  t.match(second.body, { key: res.body['key'], deduplicated: true, storedAt: res.body['storedAt'], filename: 'pic.png' }, 'the same bytes are stored once')
})

t.test('bad tokens: none, forged, expired, a Live token → 401', async (t) => {
  const body = Buffer.from('hello')
  t.equal((await post('/upload', { 'content-type': 'text/plain' }, [body])).status, 401, 'no token')
  const good = await mint()
  const forged = `${good.slice(0, good.indexOf('.'))}.${Buffer.alloc(32, 1).toString('base64url')}`
  t.match(await raw(forged, 'text/plain', body), { status: 401, body: { code: 'ESPRA_ERR_UPLOAD_TOKEN_INVALID' } }, 'forged')
  const selfSigned = signClaims(Buffer.alloc(32, 7), { v: 1, id: 'a'.repeat(22), maxSize: 10, types: [], exp: 2e9 })
  t.equal((await raw(selfSigned, 'text/plain', body)).status, 401, 'signed with another key')
  const expired = await mint({ now: Date.now() - 7_200_000, ttlMs: 3_600_000 })
  t.match(await raw(expired, 'text/plain', body), { status: 401, body: { message: /expired/ } }, 'expired')
  t.equal((await raw(liveToken({ sub: ['a'] }), 'text/plain', body)).status, 401, 'a Live token is no upload token')
  t.equal((await raw(good, 'text/plain', body)).status, 200, 'the good one still works')
})

t.test('over-size → 413 with no partial file; wrong type → 415', async (t) => {
  const tok = await mint({ maxSize: 100_000, types: ['image/png'] })
  const big = Buffer.alloc(150_000, 3)
  t.match(await raw(tok, 'image/png', big), { status: 413, body: { code: 'ESPRA_ERR_UPLOAD_TOO_LARGE' } }, 'declared too large')
  // Chunked: the size shows only while streaming; the token stays unspent, the partial file deleted.
  const streamed = await post('/upload', { authorization: `Bearer ${tok}`, 'content-type': 'image/png' },
    Array.from({ length: 15 }, () => Buffer.alloc(10_000, 4)))
  t.match(streamed, { status: 413, body: { code: 'ESPRA_ERR_UPLOAD_TOO_LARGE' } }, 'found too large while streaming')
  t.same(tmpFiles(), [], 'the partial file is deleted')
  t.equal(await blobs.head(`files/${sha256(Buffer.alloc(150_000, 4))}`), null)

  const typed = await mint({ types: ['image/png'] })
  t.match(await raw(typed, 'text/html', Buffer.from('<p>')), { status: 415, body: { code: 'ESPRA_ERR_UPLOAD_TYPE' } }, 'raw')
  const f = form('file', 'a.html', 'text/html', Buffer.from('<p>'))
  t.match(await post('/upload', { authorization: `Bearer ${typed}`, 'content-type': f.type }, [f.body]), { status: 415 }, 'multipart')
  t.same(tmpFiles(), [])
})

t.test('S3: a 12 MB body goes up in parts while it arrives and is moved to its key; nothing left under uploads-tmp/', async (t) => {
  const { randomBytes } = await import('node:crypto')
  const data = randomBytes(12 * 1024 * 1024)
  const res = await post('/upload', { authorization: `Bearer ${await mint({ maxSize: 20 * 1024 ** 2 })}`, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    Array.from({ length: 48 }, (_, i) => data.subarray(i * 256 * 1024, (i + 1) * 256 * 1024)))
  t.equal(res.status, 200, JSON.stringify(res.body))
  t.match(res.body, { sha256: sha256(data), size: data.length, encoding: null, pending: false })
  const got = await blobs.get(`files/${sha256(data)}`)
  const chunks: Buffer[] = []
  for await (const c of got!.body) chunks.push(c as Buffer)
  t.ok(Buffer.concat(chunks).equals(data), 'byte-exact')
  t.match(got!.metadata, { sha256: sha256(data), size: String(data.length) }, 'the final metadata')
  t.same(await tmpObjects(), [], 'no temporary object left')
  t.same(tmpFiles(), [])
})

t.test('disk full → 507, nothing recorded or stored (a 2 MB tmpfs as the data directory; needs mount rights)', async (t) => {
  const dir = testDir('espra-uploads-full-')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir])
  if (mounted.status !== 0) return t.plan(0, `skipped: cannot mount a tmpfs here: ${mounted.stderr.toString().trim()}`)
  t.teardown(() => void spawnSync('umount', [dir]))
  const small = await startNode(t, 'fileserver', {
    ...fast, 'node-id': 'fs-full', children: 1, 'data-dir': dir, 'blob-store': 's3', 's3-bucket': BUCKET, 's3-endpoint': endpoint,
  })
  t.teardown(() => small.stop())
  await small.waitForLog((l) => l.msg === 'registered with the seed', 'small fileserver registered')
  const content = Buffer.alloc(4 * 1024 ** 2, 9)
  const res = await new Promise<Answer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: small.port, method: 'POST', path: '/upload', agent: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(content.length) } }, (r) => {
      let text = ''
      r.on('data', (d: Buffer) => (text += d))
      r.on('end', () => resolve({ status: r.statusCode!, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    mint({ maxSize: 10 * 1024 ** 2 }).then((tok) => {
      req.setHeader('authorization', `Bearer ${tok}`)
      req.end(content)
    }, reject)
  })
  t.match(res, { status: 507, body: { code: 'ESPRA_ERR_UPLOAD_DISK_FULL' } })
  t.same(readdirSync(join(dir, 'uploads-tmp')), [], 'the partial file is deleted')
  t.equal(await datastore.get('files', sha256(content)), null, 'nothing recorded')
  t.equal(await blobs.head(`files/${sha256(content)}`), null, 'nothing stored')
})

t.test('blob store unreachable → 202 pending, stored by the retry job once it is back', async (t) => {
  await s3!.close()
  s3 = null
  const content = Buffer.from(`pending ${Date.now()}\n`.repeat(1000))
  const hash = sha256(content)
  const res = await raw(await mint({ channel: 'upload:pending' }), 'text/csv', content)
  t.equal(res.status, 202, JSON.stringify(res.body))
  t.match(res.body, { pending: true, sha256: hash, whirlpool: whirlpool(content), key: `files/${hash}` })
  t.same(pendingFiles().sort(), [`${hash}.bin`, `${hash}.json`], 'kept on local disk')
  t.equal(await datastore.get('files', hash), null, 'not recorded while not stored')
  const pendingOf = async () => (await admin.request<{ id: string; load: { pendingUploads?: number } }[]>('nodes', {})).find((n) => n.id === 'fs-up')?.load.pendingUploads
  await waitFor('the heartbeat reports it', async () => (await pendingOf()) === 1)
  const status = cli(['status', '--seed', `127.0.0.1:${metaPort}`])
  t.match(status.stdout, /uploads pending \(blob store unreachable, retrying\): fs-up 1/, 'admin status shows it')

  s3 = new S3rver(s3Options)
  await s3.run()
  await waitFor('the pending upload stored', async () => (await datastore.get('files', hash)) !== null, 60_000)
  await waitFor('the pending copy is gone', () => pendingFiles().length === 0)
  const head = await blobs.head(`files/${hash}`)
  t.equal(head?.contentEncoding, 'gzip', 'stored, compressed')
  t.ok(fs.logs.some((l) => l.msg === 'pending upload stored'))
  await waitFor('the heartbeat reports none left', async () => (await pendingOf()) === 0)
})
