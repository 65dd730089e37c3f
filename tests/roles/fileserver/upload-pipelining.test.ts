// A request pipelined behind POST /upload (issue 10 item 17): uWS closes a connection, unanswered, when
// the next request's head arrives while an answer is still pending. The fileserver stops reading the
// connection once an upload's body is whole, so the next request waits in the socket: the upload is
// answered, then the next request. Real processes: a seed and a fileserver on s3rver behind a front that
// holds the upload's PUT, so the upload is certainly unanswered when the next request is sent.
import { createHash, randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { deriveUploadKey, mintUploadToken } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { startCountingS3 } from '../../helpers/counting-s3.js'
import { client } from '../../helpers/seed.js'

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'

const BUCKET = 'espra-pipelining'
const s3 = await startCountingS3(BUCKET)
t.teardown(() => s3.close())
const metaPort = await freePort()
const flags = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s', 'blob-store': 's3', 's3-bucket': BUCKET, 's3-endpoint': s3.endpoint }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...flags, 'seed-grace': '0' })
t.teardown(() => seed.stop())
const fs = await startNode(t, 'fileserver', { ...flags, children: 1 })
t.teardown(() => fs.stop())
await fs.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')
const admin = client(t, metaPort)
await admin.ready
const token = await mintUploadToken(deriveUploadKey(SECRET), createDatastoreClient(admin), { maxSize: 1024 ** 2, ttlMs: 600_000 })

t.test('a request pipelined behind POST /upload while it is unanswered: both are answered, in order', async (t) => {
  const body = randomBytes(20_000)
  const key = `files/${createHash('sha256').update(body).digest('hex')}`
  const release = s3.holdPuts()
  t.teardown(release)
  const before = s3.total()
  const socket = connect(fs.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  let closed = false
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')))
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`)
  socket.write(body)
  // The first request to the store is the PUT of the body's temporary object (upload-stream.ts, sent when the body
  // is whole, under 5 MB): the whole body was taken, and the answer is pending until it is released.
  await waitFor('the upload stored (held)', () => s3.total() > before)
  socket.write('GET /_espra/health HTTP/1.1\r\nHost: x\r\n\r\n')
  // Give the server every chance to read the pipelined head now (before the fix it did, and closed the connection).
  await new Promise((r) => setTimeout(r, 300))
  t.equal(closed, false, 'the connection is still open')
  t.equal(received, '', 'nothing answered yet')
  release()
  await waitFor('both answers', () => received.includes('"role":"fileserver"') || closed)
  const [upload, health] = received.split(/(?=HTTP\/1\.1 )/)
  t.match(upload, /^HTTP\/1\.1 200 OK/)
  t.match(upload, `"key":"${key}"`, 'the upload is answered first')
  t.match(health, /^HTTP\/1\.1 200 OK[\s\S]*"role":"fileserver"/, 'then the pipelined request')
})
