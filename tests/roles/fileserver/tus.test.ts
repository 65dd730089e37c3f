// tus 1.0 resumable uploads end to end with real processes: a seed, a Live node with a WebSocket subscriber,
// two fileservers (one child each) sharing a real S3-protocol server (s3rver) as their blob store, and a third
// with a one-second --upload-expiry for the sweep. Upload state lives in the seed's datastore and parts in the
// blob store, so an upload started on one fileserver is finished on the other.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import S3rver from 's3rver'
import t from 'tap'
import tusClient from 'tus-js-client'
import { signClaims } from '../../../lib/live/token.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createS3BlobStore } from '../../../lib/storage/s3-blob-store.js'
import { deriveUploadKey, mintUploadToken, type UploadMintOptions } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { connectLive, token as liveToken } from '../../helpers/live.js'
import { client } from '../../helpers/seed.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'

const BUCKET = 'espra-tus'
const s3Port = await freePort()
const s3 = new S3rver({ address: '127.0.0.1', port: s3Port, silent: true, directory: testDir('espra-tus-s3-'), configureBuckets: [{ name: BUCKET }] })
await s3.run()
t.teardown(() => s3.close())
const endpoint = `http://127.0.0.1:${s3Port}`
const blobs = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
t.teardown(() => blobs.close())

const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s' }
const store = { 'blob-store': 's3', 's3-bucket': BUCKET, 's3-endpoint': endpoint }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
const live = await startNode(t, 'live', { ...fast, 'node-id': 'live-tus', children: 1 })
const dirA = testDir('espra-tus-a-')
const [a, b] = await Promise.all([
  startNode(t, 'fileserver', { ...fast, ...store, 'node-id': 'fs-tus-a', children: 1, 'data-dir': dirA }),
  startNode(t, 'fileserver', { ...fast, ...store, 'node-id': 'fs-tus-b', children: 1 }),
])
t.teardown(async () => {
  await Promise.all([a.stop(), b.stop()])
  await live.stop()
  await seed.stop()
})
await live.waitForLog((l) => l.msg === 'live: routing table applied' && l['nodes'] === 1, 'live node listed')
await Promise.all([a, b].map((n) => n.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')))

const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)
const key = deriveUploadKey(SECRET)
const mint = (opts: Partial<UploadMintOptions> = {}) => mintUploadToken(key, datastore, { maxSize: 1024 ** 2, ttlMs: 3_600_000, ...opts })

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const b64 = (s: string) => Buffer.from(s).toString('base64')
const V = { 'tus-resumable': '1.0.0' }
const header = (r: BytesAnswer, name: string) => r.headers[name.toLowerCase()] as string | undefined
const json = (r: BytesAnswer) => JSON.parse(r.body.toString('utf8')) as Record<string, unknown>

function tus(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | Buffer[]): Promise<BytesAnswer> {
  return sendForBytes({ host: '127.0.0.1', port, method, path, headers, agent: false }, body)
}

/** Creates an upload on `port`; resolves with its path (`/uploads/<id>`) and the answer. */
async function create(port: number, length: number, opts: { tok?: string; metadata?: string } = {}): Promise<{ path: string; res: BytesAnswer }> {
  const tok = opts.tok ?? (await mint())
  const res = await tus(port, 'POST', '/uploads/', {
    ...V, authorization: `Bearer ${tok}`, 'upload-length': String(length), ...(opts.metadata !== undefined ? { 'upload-metadata': opts.metadata } : {}),
  })
  return { path: header(res, 'location') ?? '', res }
}

const patch = (port: number, path: string, offset: number, body: Buffer, extra: Record<string, string> = {}) =>
  tus(port, 'PATCH', path, { ...V, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(offset), 'content-length': String(body.length), ...extra }, body)

const parts = async (path: string) => {
  const keys: string[] = []
  for await (const o of blobs.list(`tus/${path.split('/').pop()}/`)) keys.push(o.key)
  return keys
}
const tmpLeft = () => readdirSync(join(dirA, 'uploads-tmp')).filter((n) => n.startsWith('tus-'))

t.test('OPTIONS: version, extensions, max size, checksum algorithms', async (t) => {
  const res = await tus(a.port, 'OPTIONS', '/uploads/')
  t.equal(res.status, 204)
  t.equal(header(res, 'tus-version'), '1.0.0')
  t.equal(header(res, 'tus-resumable'), '1.0.0')
  t.same(header(res, 'tus-extension')?.split(','), ['creation', 'termination', 'checksum', 'expiration'])
  t.match(header(res, 'tus-checksum-algorithm'), /(^|,)sha1(,|$)/)
  t.match(header(res, 'tus-checksum-algorithm'), /(^|,)sha256(,|$)/)
  t.equal(header(res, 'tus-max-size'), String(64 * 1024 ** 3))
})

t.test('a whole upload in three PATCHes: stored like POST /upload, done event on the channel, parts and temp files gone', async (t) => {
  const sub = await connectLive(t, live.port, { token: liveToken({ sub: ['upload:*'] }) })
  t.equal((await sub.call({ op: 'sub', ch: 'upload:tus' })).op, 'sub-ok')
  const content = Buffer.from('tus resumable line\n'.repeat(20_000))
  const tok = await mint({ channel: 'upload:tus', owner: 'u7', types: ['text/*'] })
  const { path, res } = await create(a.port, content.length, { tok, metadata: `filename ${b64('notes.txt')},filetype ${b64('text/plain')}` })
  t.equal(res.status, 201, res.body.toString())
  t.match(path, /^\/uploads\/[0-9a-f]{32}$/, 'Location names the upload')
  t.ok(Date.parse(header(res, 'upload-expires') ?? '') > Date.now(), 'Upload-Expires is a date ahead')
  const third = Math.ceil(content.length / 3)
  for (let i = 0; i < 3; i++) {
    const chunk = content.subarray(i * third, (i + 1) * third)
    const r = await patch(a.port, path, i * third, chunk)
    t.equal(r.status, 204, `PATCH ${i + 1}: ${r.body.toString()}`)
    t.equal(header(r, 'upload-offset'), String(Math.min((i + 1) * third, content.length)))
    t.ok(header(r, 'upload-expires'), 'every PATCH answer carries Upload-Expires')
    if (i < 2) t.equal((await parts(path)).length, i + 1, `part ${i + 1} is in the blob store`)
    else {
      const hash = sha256(content)
      t.equal(header(r, 'espra-file-key'), `files/${hash}`, 'the last PATCH names the stored file')
      t.equal(header(r, 'espra-file-sha256'), hash)
      t.equal(header(r, 'espra-file-pending'), 'false')
    }
  }
  const hash = sha256(content)
  t.match(await datastore.get('files', hash), { sha256: hash, size: content.length, owner: 'u7', type: 'text/plain', filename: 'notes.txt', encoding: 'gzip' })
  t.equal((await blobs.head(`files/${hash}`))?.contentEncoding, 'gzip', 'stored compressed, as POST /upload stores text')
  const served = await sendForBytes({ host: '127.0.0.1', port: b.port, path: `/f/files/${hash}`, agent: false })
  t.equal(served.status, 200)
  t.equal(sha256(served.body), hash, 'served by /f/ with the right bytes')
  t.same(await parts(path), [], 'the parts are deleted')
  t.same(tmpLeft(), [], 'no temporary file left')
  const head = await tus(a.port, 'HEAD', path, V)
  t.equal(head.status, 200)
  t.equal(header(head, 'upload-offset'), String(content.length), 'HEAD after the end: the whole length')
  t.equal(header(head, 'espra-file-key'), `files/${hash}`, 'and the file it became')
  const done = await sub.next((f) => f.op === 'msg' && (f['data'] as { t?: string })?.t === 'upload.done', 'upload.done event')
  t.match(done['data'], { t: 'upload.done', sha256: hash, bytes: content.length, key: `files/${hash}`, pending: false })
})

t.test('resume on a second fileserver: create and first PATCH on A, HEAD and the rest on B', async (t) => {
  const content = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919 + (i >> 8)) % 256))
  const metadata = `filename ${b64('data.bin')},filetype ${b64('application/octet-stream')},note`
  const { path, res } = await create(a.port, content.length, { metadata })
  t.equal(res.status, 201)
  t.equal((await patch(a.port, path, 0, content.subarray(0, 100_000))).status, 204, 'first PATCH on A')

  const head = await tus(b.port, 'HEAD', path, V)
  t.equal(head.status, 200, 'B knows the upload')
  t.equal(header(head, 'upload-offset'), '100000', 'B sees the offset A recorded')
  t.equal(header(head, 'upload-length'), String(content.length))
  t.equal(header(head, 'upload-metadata'), metadata, 'metadata echoed as sent')
  t.equal(header(head, 'cache-control'), 'no-store')
  t.equal(header(head, 'tus-resumable'), '1.0.0')

  const rest = await patch(b.port, path, 100_000, content.subarray(100_000))
  t.equal(rest.status, 204, rest.body.toString())
  const hash = sha256(content)
  t.equal(header(rest, 'espra-file-key'), `files/${hash}`)
  for (const node of [b, a]) {
    const got = await sendForBytes({ host: '127.0.0.1', port: node.port, path: `/f/files/${hash}`, agent: false })
    t.equal(got.status, 200)
    t.equal(sha256(got.body), hash, `served by ${node === a ? 'A' : 'B'} with the right sha256`)
  }
  t.match(await datastore.get('files', hash), { size: content.length, filename: 'data.bin', encoding: null })
})

t.test('the reference client (tus-js-client): 64 KB chunks to A, stopped after one, resumed by URL on B', async (t) => {
  const content = Buffer.from(Array.from({ length: 250_000 }, (_, i) => (i * 13 + 1) % 256))
  const tok = await mint()
  const options = {
    headers: { authorization: `Bearer ${tok}` }, metadata: { filename: 'client.bin', filetype: 'application/octet-stream' },
    chunkSize: 64 * 1024, retryDelays: null, storeFingerprintForResuming: false,
  }
  const url = await new Promise<string>((resolve, reject) => {
    const upload = new tusClient.Upload(content, {
      ...options, endpoint: `http://127.0.0.1:${a.port}/uploads/`, onError: reject,
      // Called once the first PATCH is answered; aborting here sends nothing more.
      onChunkComplete: () => void upload.abort().then(() => resolve(upload.url!), reject),
    })
    upload.start()
  })
  const path = new URL(url).pathname
  t.match(path, /^\/uploads\/[0-9a-f]{32}$/, 'the client followed the relative Location')
  t.equal(header(await tus(b.port, 'HEAD', path, V), 'upload-offset'), String(64 * 1024), 'one chunk recorded')
  const last = await new Promise<tusClient.HttpResponse>((resolve, reject) => {
    const upload = new tusClient.Upload(content, { ...options, uploadUrl: `http://127.0.0.1:${b.port}${path}`, onError: reject, onSuccess: ({ lastResponse }) => resolve(lastResponse) })
    upload.start()
  })
  t.equal(last.getHeader('Espra-File-Sha256'), sha256(content), 'B finished it: the file holds the bytes sent')
  t.match(await datastore.get('files', sha256(content)), { size: content.length, filename: 'client.bin' })
})

t.test('checksum: a mismatch is 460 and records nothing; sha1 and sha256 accepted; bad headers 400', async (t) => {
  const content = Buffer.from('checksummed bytes '.repeat(1000))
  const { path } = await create(a.port, content.length)
  const first = content.subarray(0, 5000)
  const wrong = createHash('sha1').update('something else').digest('base64')
  const bad = await patch(a.port, path, 0, first, { 'upload-checksum': `sha1 ${wrong}` })
  t.equal(bad.status, 460)
  t.equal(json(bad)['code'], 'ESPRA_ERR_TUS_CHECKSUM')
  t.equal(header(await tus(b.port, 'HEAD', path, V), 'upload-offset'), '0', 'offset unchanged')
  t.same(await parts(path), [], 'no part stored')
  t.same(tmpLeft(), [], 'no temporary file left')

  const sha1 = await patch(a.port, path, 0, first, { 'upload-checksum': `sha1 ${createHash('sha1').update(first).digest('base64')}` })
  t.equal(sha1.status, 204)
  t.equal(header(sha1, 'upload-offset'), '5000')
  const rest = content.subarray(5000)
  t.match(json(await patch(a.port, path, 5000, rest, { 'upload-checksum': `crc32 AAAAAA==` })), { code: 'ESPRA_ERR_TUS_BAD_REQUEST', message: /not supported/ }, 'unsupported algorithm')
  t.equal((await patch(a.port, path, 5000, rest, { 'upload-checksum': 'sha256' })).status, 400, 'no digest')
  t.equal((await patch(a.port, path, 5000, rest, { 'upload-checksum': 'sha256 not*base64' })).status, 400, 'digest not base64')
  t.equal((await patch(a.port, path, 5000, rest, { 'upload-checksum': `sha256 ${b64('short')}` })).status, 400, 'digest of the wrong length')
  const ok = await patch(b.port, path, 5000, rest, { 'upload-checksum': `sha256 ${createHash('sha256').update(rest).digest('base64')}` })
  t.equal(ok.status, 204)
  t.equal(header(ok, 'espra-file-sha256'), sha256(content))
})

t.test('409: a PATCH at the wrong offset, and two PATCHes racing for one offset on two nodes', async (t) => {
  const content = Buffer.alloc(40_000, 5)
  const { path } = await create(a.port, content.length)
  const off = await patch(a.port, path, 10, content.subarray(0, 10))
  t.equal(off.status, 409)
  t.equal(header(off, 'upload-offset'), '0', 'the answer says where the upload is')
  t.equal(json(off)['code'], 'ESPRA_ERR_TUS_OFFSET')

  const [x, y] = await Promise.all([patch(a.port, path, 0, content.subarray(0, 10_000)), patch(b.port, path, 0, content.subarray(0, 12_000))])
  t.same([x.status, y.status].sort(), [204, 409], 'one wins, the other hears 409')
  const winner = x.status === 204 ? '10000' : '12000'
  t.equal(header(await tus(b.port, 'HEAD', path, V), 'upload-offset'), winner, 'the offset moved once')
  await waitFor('the loser deleted its part', async () => (await parts(path)).length === 1)
})

t.test('a client gone mid-PATCH without a checksum keeps what arrived, and resumes from there', async (t) => {
  const content = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 31 + 7) % 251))
  const { path } = await create(a.port, content.length)
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: a.port }, () => {
      socket.write(`PATCH ${path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n` +
        `Upload-Offset: 0\r\nContent-Length: ${content.length}\r\n\r\n`)
      socket.write(content.subarray(0, 80_000), () => setTimeout(() => {
        socket.destroy()
        resolve()
      }, 300))
    })
    socket.on('error', reject)
  })
  const offset = await waitFor('the partial body recorded', async () => {
    const head = await tus(b.port, 'HEAD', path, V)
    const n = Number(header(head, 'upload-offset'))
    return n > 0 && n
  })
  t.ok(offset <= 80_000, `kept ${offset} of the 80,000 bytes sent`)
  const rest = await patch(b.port, path, offset, content.subarray(offset))
  t.equal(rest.status, 204, rest.body.toString())
  t.equal(header(rest, 'espra-file-sha256'), sha256(content), 'the resumed upload holds exactly the bytes sent')
})

t.test('termination: DELETE removes state and parts; the upload is then 404', async (t) => {
  const { path } = await create(a.port, 50_000)
  t.equal((await patch(a.port, path, 0, Buffer.alloc(20_000, 1))).status, 204)
  t.equal((await parts(path)).length, 1)
  const del = await tus(b.port, 'DELETE', path, V)
  t.equal(del.status, 204)
  t.equal(header(del, 'tus-resumable'), '1.0.0')
  t.same(await parts(path), [], 'parts deleted')
  t.equal(await datastore.get('tusUploads', path.split('/').pop()!), null, 'state deleted')
  t.equal((await tus(a.port, 'HEAD', path, V)).status, 404)
  t.match(json(await patch(a.port, path, 20_000, Buffer.alloc(10))), { code: 'ESPRA_ERR_TUS_NOT_FOUND' })
  t.equal((await tus(a.port, 'DELETE', path, V)).status, 404, 'a second DELETE')
  // X-HTTP-Method-Override: a client that can only POST terminates too.
  const other = await create(a.port, 10)
  t.equal((await tus(a.port, 'POST', other.path, { ...V, 'x-http-method-override': 'DELETE' })).status, 204, 'DELETE through X-HTTP-Method-Override')
  t.equal((await tus(a.port, 'HEAD', other.path, V)).status, 404)
})

t.test('expiration: an upload past Upload-Expires is 410 and deleted, then 404', async (t) => {
  const { path } = await create(a.port, 50_000)
  t.equal((await patch(a.port, path, 0, Buffer.alloc(1000, 2))).status, 204)
  const id = path.split('/').pop()!
  // Move its expiry into the past in the datastore (the sweep of A and B runs every 10 minutes, so it is not racing).
  const state = (await datastore.get('tusUploads', id))!
  await datastore.put('tusUploads', id, { ...state, expires: Date.now() - 1000 })
  const gone = await patch(b.port, path, 1000, Buffer.alloc(10))
  t.equal(gone.status, 410)
  t.equal(json(gone)['code'], 'ESPRA_ERR_TUS_EXPIRED')
  t.equal((await tus(a.port, 'HEAD', path, V)).status, 404, 'deleted once found expired')
  t.same(await parts(path), [], 'its parts deleted')
})

t.test('expiration: the sweep deletes expired uploads nobody asks about (--upload-expiry 1s)', async (t) => {
  const c = await startNode(t, 'fileserver', { ...fast, ...store, 'node-id': 'fs-tus-c', children: 1, 'upload-expiry': '1s' })
  t.teardown(() => c.stop())
  await c.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver C registered')
  const { path, res } = await create(c.port, 50_000)
  t.equal(res.status, 201)
  t.ok(Date.parse(header(res, 'upload-expires')!) <= Date.now() + 2000, 'Upload-Expires a second ahead')
  const r = await patch(c.port, path, 0, Buffer.alloc(1000, 3))
  // The PATCH may itself come after the expiry on a loaded machine: then it is 410, and the upload is gone already.
  t.ok(r.status === 204 || r.status === 410, `PATCH answered ${r.status}`)
  const id = path.split('/').pop()!
  await waitFor('the sweep deleted the state', async () => (await datastore.get('tusUploads', id)) === null, 20_000)
  await waitFor('and the parts', async () => (await parts(path)).length === 0, 20_000)
  t.equal((await tus(a.port, 'HEAD', path, V)).status, 404)
})

t.test('412 for a missing or other Tus-Resumable; 415 for a PATCH of another type', async (t) => {
  const { path } = await create(a.port, 100)
  for (const version of [undefined, '0.2.2', '1.0']) {
    const res = await tus(a.port, 'HEAD', path, version === undefined ? {} : { 'tus-resumable': version })
    t.equal(res.status, 412, `Tus-Resumable ${version ?? '(none)'}`)
    t.equal(header(res, 'tus-version'), '1.0.0')
  }
  const post = await tus(a.port, 'POST', '/uploads/', { 'tus-resumable': '2.0.0', 'upload-length': '10', authorization: `Bearer ${await mint()}` })
  t.equal(post.status, 412, 'creation too, before the token is looked at')
  for (const type of ['text/plain', '', 'application/octet-stream']) {
    const res = await patch(a.port, path, 0, Buffer.alloc(10), { 'content-type': type })
    t.equal(res.status, 415, `Content-Type ${JSON.stringify(type)}`)
    t.equal(json(res)['code'], 'ESPRA_ERR_TUS_CONTENT_TYPE')
  }
  t.equal(header(await tus(a.port, 'HEAD', path, V), 'upload-offset'), '0')
})

t.test('413: creation over the token size (token not spent); PATCH bodies past Upload-Length, declared or streamed', async (t) => {
  const tok = await mint({ maxSize: 1000 })
  const over = await create(a.port, 1001, { tok })
  t.equal(over.res.status, 413)
  t.equal(json(over.res)['code'], 'ESPRA_ERR_UPLOAD_TOO_LARGE')
  t.equal((await create(a.port, 64 * 1024 ** 3 + 1)).res.status, 413, 'over Tus-Max-Size')
  const { path, res } = await create(a.port, 1000, { tok })
  t.equal(res.status, 201, 'the token still works: a refused creation does not spend it')
  t.equal((await patch(a.port, path, 0, Buffer.alloc(1001))).status, 413, 'declared Content-Length too large')
  // Chunked: the size shows only while streaming.
  const streamed = await tus(a.port, 'PATCH', path, { ...V, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' },
    Array.from({ length: 5 }, () => Buffer.alloc(300, 1)))
  t.equal(streamed.status, 413, 'found too large while streaming')
  t.equal(header(await tus(a.port, 'HEAD', path, V), 'upload-offset'), '0', 'nothing recorded')
  t.same(await parts(path), [], 'no part stored')
  t.same(tmpLeft(), [], 'the partial body is deleted')
})

t.test('disk full → 507, nothing recorded (a 2 MB tmpfs as the data directory; needs mount rights)', async (t) => {
  const dir = testDir('espra-tus-full-')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir])
  if (mounted.status !== 0) return t.plan(0, `skipped: cannot mount a tmpfs here: ${mounted.stderr.toString().trim()}`)
  t.teardown(() => void spawnSync('umount', [dir]))
  const small = await startNode(t, 'fileserver', { ...fast, ...store, 'node-id': 'fs-tus-full', children: 1, 'data-dir': dir })
  t.teardown(() => small.stop())
  const content = Buffer.alloc(4 * 1024 ** 2, 9)
  const { path } = await create(small.port, content.length, { tok: await mint({ maxSize: 10 * 1024 ** 2 }) })
  const res = await patch(small.port, path, 0, content)
  t.equal(res.status, 507)
  t.equal(json(res)['code'], 'ESPRA_ERR_UPLOAD_DISK_FULL')
  t.equal(header(await tus(a.port, 'HEAD', path, V), 'upload-offset'), '0', 'nothing recorded')
  t.same(await parts(path), [], 'no part stored')
  t.same(readdirSync(join(dir, 'uploads-tmp')), [], 'the partial body is deleted')
})

t.test('tokens: none, forged, expired, a Live token → 401; reused → 403; a type the token does not allow → 415', async (t) => {
  const post = (headers: Record<string, string>, query = '') => tus(a.port, 'POST', `/uploads/${query}`, { ...V, 'upload-length': '10', ...headers })
  t.equal((await post({})).status, 401, 'no token')
  const good = await mint({ types: ['image/png'] })
  const forged = `${good.slice(0, good.indexOf('.'))}.${Buffer.alloc(32, 1).toString('base64url')}`
  t.match(json(await post({ authorization: `Bearer ${forged}` })), { code: 'ESPRA_ERR_UPLOAD_TOKEN_INVALID' }, 'forged')
  const selfSigned = signClaims(Buffer.alloc(32, 7), { v: 1, id: 'a'.repeat(22), maxSize: 10, types: [], exp: 2e9 })
  t.equal((await post({ authorization: `Bearer ${selfSigned}` })).status, 401, 'signed with another key')
  const expired = await mint({ now: Date.now() - 7_200_000, ttlMs: 3_600_000 })
  t.match(json(await post({ authorization: `Bearer ${expired}` })), { message: /expired/ }, 'expired')
  t.equal((await post({ authorization: `Bearer ${liveToken({ sub: ['a'] })}` })).status, 401, 'a Live token is no upload token')
  t.equal((await post({ authorization: `Bearer ${good}`, 'upload-metadata': `filetype ${b64('text/html')}` })).status, 415, 'type not allowed')
  t.equal((await post({ authorization: `Bearer ${good}` })).status, 415, 'no filetype: application/octet-stream, not allowed either')
  const created = await post({ 'upload-metadata': `filetype ${b64('image/png')}` }, `?token=${encodeURIComponent(good)}`)
  t.equal(created.status, 201, 'the token in the query works')
  const again = await post({ authorization: `Bearer ${good}`, 'upload-metadata': `filetype ${b64('image/png')}` })
  t.equal(again.status, 403, 'single use: spent at creation')
  t.equal(json(again)['code'], 'ESPRA_ERR_UPLOAD_TOKEN_USED')
})

t.test('malformed headers and paths → 400 with a precise error', async (t) => {
  const tok = await mint()
  const post = (headers: Record<string, string>) => tus(a.port, 'POST', '/uploads/', { ...V, authorization: `Bearer ${tok}`, ...headers })
  const cases: [Record<string, string>, RegExp][] = [
    [{}, /Upload-Length is missing/],
    [{ 'upload-length': 'abc' }, /Upload-Length must be a non-negative integer/],
    [{ 'upload-length': '-1' }, /Upload-Length must be/],
    [{ 'upload-length': '1.5' }, /Upload-Length must be/],
    [{ 'upload-length': '10', 'upload-defer-length': '1' }, /Upload-Defer-Length is not supported/],
    [{ 'upload-length': '10', 'upload-metadata': 'filename not-base64!' }, /value of filename is not base64/],
    [{ 'upload-length': '10', 'upload-metadata': `a ${b64('x')},a ${b64('y')}` }, /key a appears twice/],
    [{ 'upload-length': '10', 'upload-metadata': 'a b c' }, /is not "key base64value"/],
    [{ 'upload-length': '10', 'upload-metadata': `,a ${b64('x')}` }, /is not "key base64value"/],
    [{ 'upload-length': '10', 'upload-metadata': `filename ${b64('x'.repeat(4000))}` }, /at most 4096 bytes/],
  ]
  for (const [headers, message] of cases) {
    const res = await post(headers)
    t.equal(res.status, 400, JSON.stringify(headers).slice(0, 80))
    t.match(json(res), { code: 'ESPRA_ERR_TUS_BAD_REQUEST', message })
  }
  const withBody = await tus(a.port, 'POST', '/uploads/', { ...V, authorization: `Bearer ${tok}`, 'upload-length': '3', 'content-length': '3' }, Buffer.from('abc'))
  t.match(json(withBody), { code: 'ESPRA_ERR_TUS_BAD_REQUEST', message: /no creation-with-upload/ }, 'a creation with a body')
  t.equal((await post({ 'upload-length': '10' })).status, 201, 'the token survived every refusal')

  const { path } = await create(a.port, 100)
  const noOffset = await tus(a.port, 'PATCH', path, { ...V, 'content-type': 'application/offset+octet-stream' }, Buffer.alloc(1))
  t.match(json(noOffset), { code: 'ESPRA_ERR_TUS_BAD_REQUEST', message: /Upload-Offset is missing/ })
  t.equal((await patch(a.port, path, 0, Buffer.alloc(1), { 'upload-offset': 'x1' })).status, 400, 'Upload-Offset not a number')
  t.equal((await tus(a.port, 'PATCH', '/uploads/', { ...V })).status, 405, 'PATCH on the creation URL')
  t.equal((await tus(a.port, 'PUT', path, V)).status, 405, 'PUT')
  t.equal((await tus(a.port, 'POST', path, { ...V, 'x-http-method-override': 'GET' })).status, 400, 'an override that is no tus method')

  const raw = (target: string) => new Promise<number>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: a.port }, () => socket.write(`HEAD ${target} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n`))
    let text = ''
    // A HEAD answer has no body: the head is the whole answer.
    socket.on('data', (d) => {
      text += d.toString('latin1')
      if (!text.includes('\r\n\r\n')) return
      socket.destroy()
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0))
    })
    socket.on('error', reject)
  })
  const id = path.split('/').pop()!
  for (const target of ['/uploads/../../etc/passwd', '/uploads/%2e%2e%2fetc', '/uploads/%2E%2E', `/uploads/${id}/..`, `/uploads/${id}%00`, '/uploads//etc/passwd', `/uploads/${id.toUpperCase()}`, `/uploads/${id}x`, '/uploads/..%5c..%5cwin.ini']) {
    t.equal(await raw(target), 400, target)
  }
  t.equal(await raw(path), 200, 'the well-formed path still answers')
  t.equal(await raw(`/uploads/${'0'.repeat(32)}`), 404, 'a well-formed unknown id is 404')
})

t.test('an empty upload (Upload-Length 0) is finished at creation', async (t) => {
  const { res } = await create(a.port, 0, { metadata: `filename ${b64('empty.txt')}` })
  t.equal(res.status, 201)
  const hash = sha256(Buffer.alloc(0))
  t.equal(header(res, 'espra-file-key'), `files/${hash}`)
  t.match(await datastore.get('files', hash), { size: 0 })
})
