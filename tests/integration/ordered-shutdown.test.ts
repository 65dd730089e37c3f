// Shutdown is one ordered sequence (lib/process/child.ts): a child told to drain stops accepting, lets every request it
// accepted finish, and only then closes the role's parts. An upload still streaming when the node gets SIGTERM needs the
// blob store, the datastore and the progress publisher after the drain began; it must still be stored and recorded.
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { deriveUploadKey, mintUploadToken } from '../../lib/uploads/token.js'
import { freePort, SECRET, startNode } from '../helpers/cluster.js'
import { client } from '../helpers/seed.js'
import { testDir } from '../helpers/temp-dir.js'

const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '3s' }
const blobDir = testDir('espra-node-test-ordered-')
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
const live = await startNode(t, 'live', { ...fast, 'node-id': 'live-os', children: 1 })
const fs = await startNode(t, 'fileserver', { ...fast, 'node-id': 'fs-os', children: 1, 'blob-store': 'local', 'blob-dir': blobDir, 'drain-timeout': '20s' })
t.teardown(async () => {
  await fs.stop()
  await live.stop()
  await seed.stop()
})
await fs.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')

const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)

t.test('an upload streaming when SIGTERM arrives is answered, stored and recorded before the node exits', async (t) => {
  const token = await mintUploadToken(deriveUploadKey(SECRET), datastore, { maxSize: 1024 ** 2, ttlMs: 600_000, owner: 'u1' })
  const content = Buffer.from('ordered shutdown\n'.repeat(20_000))
  const hash = createHash('sha256').update(content).digest('hex')
  let exited = false
  void fs.exited.then(() => (exited = true))

  const answer = new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: fs.port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'content-length': String(content.length) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    void (async () => {
      const eighth = content.length / 8
      for (let i = 0; i < 8; i++) {
        req.write(content.subarray(i * eighth, (i + 1) * eighth))
        if (i === 1) {
          // Two eighths in: the node is told to stop while the rest is still to come.
          fs.proc.kill('SIGTERM')
          await sleep(300)
        }
        await sleep(250)
      }
      req.end()
    })()
  })

  const { status, body } = await answer
  t.equal(status, 200, JSON.stringify(body))
  t.match(body, { key: `files/${hash}`, size: content.length, sha256: hash, owner: 'u1', pending: false })
  t.notOk(exited, 'the node was still up when it answered')
  t.match(await datastore.get('files', hash), { sha256: hash, size: content.length, owner: 'u1' }, 'recorded in the datastore')
  const { code } = await fs.exited
  t.equal(code, 0, 'then it exits 0')
  const errors = fs.logs.filter((l) => l.level === 'error' || l.level === 'fatal')
  t.same(errors, [], 'no error logged')
})
