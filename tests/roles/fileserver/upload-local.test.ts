// POST /upload onto the local blob store, end to end with real processes (a seed and a fileserver): the
// received file is handed to the store (a hard link, no second write), whirlpool hashed on the child's hash
// thread over a body larger than the thread's 4 MB in-flight bound; dedupe of the same bytes; a client
// that goes away mid-body leaves no temporary file and no object; a compressible type gzipped on the way.
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, statSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { deriveUploadKey, mintUploadToken } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { readAll } from '../../helpers/blob-store-contract.js'
import { client } from '../../helpers/seed.js'
import { testDir } from '../../helpers/temp-dir.js'

const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s' }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
const dataDir = testDir('espra-upload-local-')
const blobDir = join(dataDir, 'blobs')
const fs = await startNode(t, 'fileserver', { ...fast, 'node-id': 'fs-local', children: 1, 'data-dir': dataDir, 'blob-dir': blobDir })
t.teardown(async () => {
  await fs.stop()
  await seed.stop()
})
await fs.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')
const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)
const mint = (maxSize = 20 * 1024 ** 2) => mintUploadToken(deriveUploadKey(SECRET), datastore, { maxSize, ttlMs: 3_600_000 })
const blobs = await createLocalBlobStore(blobDir)

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
function whirlpool(b: Buffer): string {
  const out = spawnSync(process.execPath, ['--openssl-legacy-provider', '-e', "process.stdin.pipe(require('crypto').createHash('whirlpool').setEncoding('hex')).pipe(process.stdout)"], { input: b })
  return out.stdout.toString().trim()
}
const tmpFiles = () => readdirSync(join(dataDir, 'uploads-tmp'))

interface Answer { status: number; body: Record<string, unknown> }

/** POSTs `body` in 256 KB writes; chunked (no Content-Length) when `chunked`. */
function upload(tok: string, body: Buffer, type = 'application/octet-stream', chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: fs.port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${tok}`, 'content-type': type, ...(chunked ? {} : { 'content-length': String(body.length) }) },
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    for (let off = 0; off < body.length; off += 256 * 1024) req.write(body.subarray(off, off + 256 * 1024))
    req.end()
  })
}

/**
 * Declares `size` bytes but sends only `sent` and waits for the answer: an
 * answer that comes is one given before the body was whole. (Sending the
 * rest races the server's close after an early answer: the client's write
 * fails with EPIPE and Node's client drops the answer with the socket.)
 */
function uploadCut(tok: string, size: number, sent: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: fs.port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/octet-stream', 'content-length': String(size) },
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => {
        resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> })
        req.destroy()
      })
    })
    req.on('error', reject)
    req.write(randomBytes(sent))
  })
}

t.test('a 9 MB body: both hashes right, the store holds the received bytes, nothing left in uploads-tmp; the same bytes again are deduplicated', async (t) => {
  const data = randomBytes(9 * 1024 * 1024)
  const res = await upload(await mint(), data)
  t.equal(res.status, 200, JSON.stringify(res.body))
  t.match(res.body, { sha256: sha256(data), whirlpool: whirlpool(data), size: data.length, encoding: null, deduplicated: false })
  const got = await blobs.get(`files/${sha256(data)}`)
  t.equal(got?.etag, sha256(data), 'the version tag is the sha256 computed while receiving')
  t.ok(got !== null && (await readAll(got.body)).equals(data), 'the stored bytes are byte-exact')
  const stored = readdirSync(join(blobDir, 'files')).filter((f) => f.startsWith(`${sha256(data)}#d-`))
  t.equal(stored.length, 1)
  t.equal(statSync(join(blobDir, 'files', stored[0]!)).nlink, 1, 'the temporary name is gone, the stored one stays')
  t.same(tmpFiles(), [], 'uploads-tmp is empty')

  const again = await upload(await mint(), data)
  t.match(again, { status: 200, body: { deduplicated: true, storedAt: res.body['storedAt'] } }, 'stored once')
  t.same(tmpFiles(), [])
  t.equal(readdirSync(join(blobDir, 'files')).filter((f) => f.startsWith(`${sha256(data)}#d-`)).length, 1, 'no second bytes file')
})

t.test('a client that goes away mid-body leaves no temporary file and no object', async (t) => {
  const data = randomBytes(8 * 1024 * 1024)
  const tok = await mint()
  const req = request({
    host: '127.0.0.1', port: fs.port, method: 'POST', path: '/upload', agent: false,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
  })
  req.on('error', () => {})
  req.write(data.subarray(0, 5 * 1024 * 1024))
  await waitFor('the body is being received', () => tmpFiles().length === 1)
  req.destroy()
  await waitFor('the partial file is removed', () => tmpFiles().length === 0)
  t.same(tmpFiles(), [])
  t.equal(await blobs.head(`files/${sha256(data)}`), null, 'nothing stored')
})

t.test('a compressible type is gzipped while it arrives and stored from that gzip; a body over the limit leaves neither file', async (t) => {
  let text = ''
  for (let i = 0; text.length < 3 * 1024 * 1024; i++) text += `${i}\tinvoice ${(i * 7919) % 100000}\tpaid\n`
  const data = Buffer.from(text)
  const res = await upload(await mint(), data, 'text/plain')
  t.match(res, { status: 200, body: { sha256: sha256(data), whirlpool: whirlpool(data), size: data.length, encoding: 'gzip' } })
  const got = await blobs.get(`files/${sha256(data)}`)
  t.equal(got?.contentEncoding, 'gzip')
  const stored = got === null ? Buffer.alloc(0) : await readAll(got.body)
  t.ok(stored.length < data.length / 3, `compressed (${stored.length} of ${data.length} bytes)`)
  t.ok(gunzipSync(stored).equals(data), 'the gzip holds the bytes sent')
  t.same(tmpFiles(), [], 'neither the received file nor its .gz is left')

  const over = await upload(await mint(1024 * 1024), data, 'text/plain', true)
  t.match(over, { status: 413, body: { code: 'ESPRA_ERR_UPLOAD_TOO_LARGE' } }, 'found too large while streaming')
  t.same(tmpFiles(), [], 'no partial file, no partial .gz')
})

t.test('one token, four uploads at once: one is recorded, three are refused 403; a used token is refused before its body is stored', async (t) => {
  const tok = await mint()
  const bodies = Array.from({ length: 4 }, () => randomBytes(512 * 1024))
  const answers = await Promise.all(bodies.map((b) => upload(tok, b)))
  t.same(answers.map((a) => a.status).sort(), [200, 403, 403, 403], JSON.stringify(answers.map((a) => a.body)))
  for (const a of answers.filter((x) => x.status === 403)) t.equal(a.body['code'], 'ESPRA_ERR_UPLOAD_TOKEN_USED')
  const recorded = await Promise.all(bodies.map((b) => datastore.get('files', sha256(b))))
  t.equal(recorded.filter((r) => r !== null).length, 1, 'one record: the winner\'s')
  t.equal(recorded.findIndex((r) => r !== null), answers.findIndex((a) => a.status === 200))

  const filesBefore = (await datastore.list('files', { limit: 1000 })).entries.length
  t.match(await uploadCut(tok, 3 * 1024 * 1024, 256 * 1024), { status: 403, body: { code: 'ESPRA_ERR_UPLOAD_TOKEN_USED' } }, 'used before: refused with most of its body still to come')
  t.equal((await datastore.list('files', { limit: 1000 })).entries.length, filesBefore, 'nothing recorded')
  await waitFor('its partial file removed', async () => tmpFiles().length === 0 || undefined)
})

t.test('an upload that fails leaves its token unspent: the same token then works', async (t) => {
  const tok = await mint(1024 * 1024)
  t.match(await upload(tok, randomBytes(2 * 1024 * 1024), 'application/octet-stream', true), { status: 413 })
  const data = randomBytes(100_000)
  t.match(await upload(tok, data), { status: 200, body: { sha256: sha256(data), deduplicated: false } })
  t.match(await upload(tok, randomBytes(10)), { status: 403, body: { code: 'ESPRA_ERR_UPLOAD_TOKEN_USED' } }, 'then it is spent')
})
