// The S3 backend against a real S3-protocol server (s3rver) on a free port: the same contract as the local backend.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createServer as createHttpServer, request } from 'node:http'
import { createServer } from 'node:net'
import S3rver from 's3rver'
import { createBlobStore, type BlobStore } from '../../../lib/storage/blob-store.js'
import { createS3BlobStore, type S3BlobStoreOptions } from '../../../lib/storage/s3-blob-store.js'
import { blobStoreContract, randomStream, readAll, sha256 } from '../../helpers/blob-store-contract.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'

const BUCKET = 'espra-test'
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

const server = new S3rver({
  address: '127.0.0.1', port: 0, silent: true, resetOnClose: true,
  directory: testDir('espra-s3rver-'), configureBuckets: [{ name: BUCKET }],
})
const { port } = await server.run()
t.teardown(() => server.close())
const endpoint = `http://127.0.0.1:${port}`

const options = (extra: Partial<S3BlobStoreOptions> = {}): S3BlobStoreOptions => ({
  bucket: BUCKET, region: 'us-east-1', endpoint, credentials, ...extra,
})

function store(t: Test, extra: Partial<S3BlobStoreOptions> = {}): BlobStore {
  const s = createS3BlobStore(options(extra))
  t.teardown(() => s.close())
  return s
}

/** A port nobody listens on (bound then released). */
async function deadPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const p = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return p
}

t.test('contract', async (t) => {
  // s3rver 3.7.1 reads `bytes=-3` as `bytes=0-3` and `bytes=0-0` as the whole object (AWS gets both right).
  blobStoreContract(t, () => createBlobStore({ kind: 's3', ...options() }), { brokenRanges: ['{"suffix":3}', '{"start":0,"end":0}'] })
})

/** A pass-through HTTP proxy in front of s3rver that records each request's method and query. */
async function recordingProxy(t: Test): Promise<{ endpoint: string; seen: string[] }> {
  const seen: string[] = []
  const proxy = createHttpServer((req, res) => {
    seen.push(`${req.method} ${new URL(req.url!, 'http://x').searchParams.toString()}`)
    const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers)
      answer.pipe(res)
    })
    req.pipe(up)
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  t.teardown(() => proxy.close())
  return { endpoint: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`, seen }
}

t.test('a large body goes up as a multipart upload in 5 MB parts', async (t) => {
  const { endpoint: via, seen } = await recordingProxy(t)
  const s = store(t, { endpoint: via })
  const size = 11 * 1024 * 1024
  const { stream, digest } = randomStream(size)
  const put = await s.put('multi/part.bin', stream, { metadata: { kind: 'multi' } })
  t.equal(put.size, size)
  const parts = seen.filter((line) => /^PUT partNumber=\d+&uploadId=/.test(line))
  t.equal(parts.length, 3, '11 MB in 5 MB parts')
  t.ok(seen.some((line) => line === 'POST uploads='), 'CreateMultipartUpload')
  t.ok(seen.some((line) => /^POST uploadId=/.test(line)), 'CompleteMultipartUpload')
  const got = await s.get('multi/part.bin')
  t.same(got!.metadata, { kind: 'multi' })
  t.same(await sha256(got!.body), { digest, size })

  seen.length = 0
  await s.put('single', randomStream(1000).stream)
  t.same(seen, ['PUT x-id=PutObject'], 'a small stream is one PutObject')
})

t.test('a missing bucket is a failure, not a miss', async (t) => {
  const s = store(t, { bucket: 'no-such-bucket' })
  await t.rejects(s.get('x'), { code: 'ESPRA_ERR_STORAGE_FAILED', details: { name: 'NoSuchBucket', status: 404 } })
  await t.rejects(s.put('x', Buffer.from('x')), { code: 'ESPRA_ERR_STORAGE_FAILED' })
})

t.test('endpoint down: ESPRA_ERR_STORAGE_UNAVAILABLE from every operation', async (t) => {
  const s = store(t, { endpoint: `http://127.0.0.1:${await deadPort()}`, maxAttempts: 1 })
  await t.rejects(s.put('x', Buffer.from('x')), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE', details: { reason: 'ECONNREFUSED' } })
  await t.rejects(s.put('x', randomStream(100).stream), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
  await t.rejects(s.get('x'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
  await t.rejects(s.head('x'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
  await t.rejects(s.delete('x'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
  await t.rejects((async () => {
    for await (const _ of s.list('x')) t.fail('nothing to list')
  })(), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
})

t.test('with retries, a server that comes back is used', async (t) => {
  const s = store(t)
  await s.put('again', Buffer.from('still here'))
  t.equal((await readAll((await s.get('again'))!.body)).toString(), 'still here')
})
