// The blob-store copy of an upload made while it arrives (roles/fileserver/upload-stream.ts) against a real
// S3-protocol server (s3rver): a body that ended just before it was refused (a used token found after the
// last byte) leaves no temporary object once `abort` returns, whether its last write was a PUT or a
// multipart completion; a finished one is moved to its key and nothing is left under uploads-tmp/.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import S3rver from 's3rver'
import t from 'tap'
import { createS3BlobStore } from '../../../lib/storage/s3-blob-store.js'
import { startStreamedBlob } from '../../../roles/fileserver/upload-stream.js'
import { testDir } from '../../helpers/temp-dir.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
const BUCKET = 'espra-upload-stream'
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, resetOnClose: true, directory: testDir('espra-upload-stream-'), configureBuckets: [{ name: BUCKET }] })
const { port } = await server.run()
t.teardown(() => server.close())
const blobs = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
t.teardown(() => blobs.close())

async function leftovers(): Promise<string[]> {
  const keys: string[] = []
  for await (const e of blobs.list('uploads-tmp/')) keys.push(e.key)
  return keys
}

/** Sends `data` through the tee as a body would, and ends it. */
async function pass(tee: NodeJS.ReadWriteStream, data: Buffer): Promise<void> {
  tee.resume()
  const ended = once(tee, 'end')
  tee.end(data)
  await ended
}

t.test('refused after the last byte: abort waits for the last write and deletes what it made', async (t) => {
  for (const [name, size] of [['one PUT', 1], ['a multipart completion', 6 * 1024 * 1024]] as const) {
    const streamed = startStreamedBlob(blobs, 'fs-a')!
    await pass(streamed.tee, randomBytes(size))
    await new Promise(setImmediate) // the store's stream has sent its last request
    await streamed.abort()
    t.same(await leftovers(), [], `${name}: nothing under uploads-tmp/ once abort returns`)
  }
})

t.test('finished: moved to its key, nothing left under uploads-tmp/', async (t) => {
  const data = randomBytes(1000)
  const streamed = startStreamedBlob(blobs, 'fs-a')!
  await pass(streamed.tee, data)
  t.equal(await streamed.finish('files/done', { contentType: 'application/octet-stream' }), true)
  t.equal((await blobs.head('files/done'))?.size, data.length)
  t.same(await leftovers(), [])
})
