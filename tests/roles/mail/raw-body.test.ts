// takeRawBody: held in memory up to the threshold, past it streamed whole into a staged put of a real local blob store.
import { PassThrough, Readable } from 'node:stream'
import t from 'tap'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { takeRawBody } from '../../../roles/mail/raw-body.js'
import { testDir } from '../../helpers/temp-dir.js'

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of body) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

t.test('up to the threshold the bytes are held; past it they are staged whole, what was held first', async (t) => {
  const blobs = await createLocalBlobStore(testDir('espra-raw-body-'))
  t.teardown(() => blobs.close())
  const stage = (rest: Readable) => blobs.stage('mail/in/x.eml', rest)
  const chunks = (n: number, size: number) => Readable.from(Array.from({ length: n }, (_, i) => Buffer.alloc(size, 97 + (i % 26))))

  const small = await takeRawBody(chunks(10, 100), 1000, stage)
  t.equal(small.staged, null, 'exactly the threshold: held')
  t.same(small.bytes, Buffer.concat(Array.from({ length: 10 }, (_, i) => Buffer.alloc(100, 97 + i))))

  const big = await takeRawBody(chunks(30, 100), 1000, stage)
  t.equal(big.bytes, null, 'one byte past it: staged')
  t.equal(big.staged!.size, 3000)
  await blobs.commit([big.staged!])
  const stored = await readAll((await blobs.get('mail/in/x.eml'))!.body)
  t.same(stored, Buffer.concat(Array.from({ length: 30 }, (_, i) => Buffer.alloc(100, 97 + (i % 26)))), 'every byte, in order')
})

t.test('a body that fails rejects, held or streaming into the blob store', async (t) => {
  const blobs = await createLocalBlobStore(testDir('espra-raw-body-'))
  t.teardown(() => blobs.close())
  const stage = (rest: Readable) => blobs.stage('mail/in/y.eml', rest)
  for (const sent of [10, 5000]) {
    const body = new PassThrough()
    const taken = takeRawBody(body, 1000, stage)
    body.write(Buffer.alloc(sent))
    setImmediate(() => body.destroy(Object.assign(new Error('the client closed the connection during DATA'), { code: 'ECONNRESET' })))
    await t.rejects(taken, { code: 'ECONNRESET' }, `after ${sent} bytes`)
  }
  t.equal(await blobs.head('mail/in/y.eml'), null, 'nothing stored')
})
