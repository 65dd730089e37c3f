// S3 writes as the bytes arrive (lib/storage/s3-multipart.ts through BlobStore.openStream / moveStreamed)
// against a real S3-protocol server (s3rver): a 12 MB body in 64 KB writes goes up as parts of 5, 5 and 2 MB
// while it is written, then is moved on the server to its final key with its type, encoding and metadata,
// byte-exact, the temporary key gone; a body under one part is one PUT; an aborted stream leaves no object;
// an abort after the end waits for the last write already sent;
// a store that is down fails `done` with ESPRA_ERR_STORAGE_UNAVAILABLE.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import S3rver from 's3rver'
import t from 'tap'
import { createS3BlobStore } from '../../../lib/storage/s3-blob-store.js'
import { readAll } from '../../helpers/blob-store-contract.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
const BUCKET = 'espra-stream'
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, resetOnClose: true, directory: testDir('espra-s3stream-'), configureBuckets: [{ name: BUCKET }] })
const { port } = await server.run()
t.teardown(() => server.close())
const blobs = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, credentials })
t.teardown(() => blobs.close())

async function write(stream: NodeJS.WritableStream, data: Buffer, step = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += step) {
    if (!stream.write(data.subarray(off, off + step))) await once(stream, 'drain')
  }
  stream.end()
}

t.test('12 MB: three parts sent while written, moved with its final options, byte-exact', async (t) => {
  const data = randomBytes(12 * 1024 * 1024)
  const stream = blobs.openStream!('uploads-tmp/n1/a')
  await write(stream, data)
  t.same(await stream.done, { size: data.length, parts: 3 })
  await blobs.moveStreamed!('uploads-tmp/n1/a', 'files/a', data.length, { contentType: 'image/png', contentEncoding: 'gzip', metadata: { sha256: 'x', filename: 'a.png' } })
  const got = await blobs.get('files/a')
  t.ok(got !== null && (await readAll(got.body)).equals(data), 'byte-exact')
  t.match(got, { contentType: 'image/png', contentEncoding: 'gzip', metadata: { sha256: 'x', filename: 'a.png' }, size: data.length })
  t.equal(await blobs.head('uploads-tmp/n1/a'), null, 'the temporary key is gone')
})

t.test('under one part: one PUT', async (t) => {
  const data = randomBytes(100_000)
  const stream = blobs.openStream!('uploads-tmp/n1/b')
  await write(stream, data)
  t.same(await stream.done, { size: data.length, parts: 0 })
  await blobs.moveStreamed!('uploads-tmp/n1/b', 'files/b', data.length, { contentType: 'text/plain' })
  const got = await blobs.get('files/b')
  t.ok(got !== null && (await readAll(got.body)).equals(data))
})

t.test('aborted after two parts: no object under either key', async (t) => {
  const stream = blobs.openStream!('uploads-tmp/n1/c')
  for (let i = 0; i < 11; i++) if (!stream.write(randomBytes(1024 * 1024))) await once(stream, 'drain')
  await stream.abort()
  await t.rejects(stream.done, 'done rejects')
  t.equal(await blobs.head('uploads-tmp/n1/c'), null)
})

t.test('aborted after it ended, its last write sent: abort waits for it, done says the object was made (the caller deletes it)', async (t) => {
  for (const [name, size, parts] of [['one PUT', 1, 0], ['a multipart completion', 6 * 1024 * 1024, 1]] as const) {
    const key = `uploads-tmp/n1/late-${parts}`
    const stream = blobs.openStream!(key)
    stream.end(randomBytes(size))
    await new Promise(setImmediate) // the stream's end has sent its last request
    await stream.abort()
    t.same(await stream.done, { size, parts }, `${name}: done resolves`)
    t.not(await blobs.head(key), null, `${name}: the object is there once abort returns, not later`)
    await blobs.delete(key)
  }
})

t.test('the store down: done fails as unavailable, nothing waits forever', async (t) => {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const dead = (s.address() as { port: number }).port
  s.close()
  const down = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: `http://127.0.0.1:${dead}`, credentials, maxAttempts: 1 })
  t.teardown(() => down.close())
  const stream = down.openStream!('uploads-tmp/n1/d')
  stream.on('error', () => {})
  stream.write(randomBytes(6 * 1024 * 1024))
  stream.end()
  await t.rejects(stream.done, { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
})
