// Fileserver metrics from real traffic: a seed and a fileserver (one child, so every lookup is this child's)
// over a local blob store; uploads by outcome, cache hits by layer, misses, negative hits, the disk cache.
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { deriveUploadKey, mintUploadToken } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode } from '../../helpers/cluster.js'
import { sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { answered, scrape, type PromText } from '../../helpers/prom-text.js'
import { client } from '../../helpers/seed.js'
import { testDir } from '../../helpers/temp-dir.js'

const blobDir = testDir('espra-fs-metrics-blobs-')
const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s', 'blob-dir': blobDir }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
t.teardown(() => seed.stop())
const fs = await startNode(t, 'fileserver', { ...fast, children: 1 })
t.teardown(() => fs.stop())
await fs.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')
const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)

const get = (path: string): Promise<BytesAnswer> => sendForBytes({ host: '127.0.0.1', port: fs.port, path, method: 'GET', headers: {}, agent: false })
async function upload(body: Buffer): Promise<BytesAnswer> {
  const token = await mintUploadToken(deriveUploadKey(SECRET), datastore, { maxSize: 1024 ** 2, ttlMs: 600_000 })
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'content-length': String(body.length) }
  return sendForBytes({ host: '127.0.0.1', port: fs.port, path: '/upload', method: 'POST', headers, agent: false }, body)
}
const v = (p: PromText, name: string, labels: Record<string, string> = {}) => p.find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('uploads by outcome; hits, misses and negative hits; the disk cache', async (t) => {
  const before = await scrape(fs.metricsPort)
  const body = randomBytes(3000)
  t.equal((await upload(body)).status, 200)
  t.equal((await upload(body)).status, 200, 'the same bytes again')
  const path = `/f/files/${createHash('sha256').update(body).digest('hex')}`
  const missing = `/f/files/${createHash('sha256').update('never uploaded').digest('hex')}`
  t.equal((await get(path)).status, 200, 'first read: a miss, fetched into the disk cache')
  t.equal((await get(path)).status, 200, 'second read: from memory')
  t.equal((await get(missing)).status, 404, 'a miss the store does not have')
  t.equal((await get(missing)).status, 404, 'then known missing')
  const after = await scrape(fs.metricsPort)
  const d = (name: string, labels: Record<string, string> = {}) => v(after, name, labels) - v(before, name, labels)

  t.equal(d('espra_fileserver_uploads_total', { outcome: 'stored' }), 1)
  t.equal(d('espra_fileserver_uploads_total', { outcome: 'deduplicated' }), 1)
  t.equal(d('espra_fileserver_uploads_total', { outcome: 'pending' }), 0)
  t.equal(d('espra_fileserver_cache_misses_total'), 2, 'two reads found nothing on disk')
  t.equal(d('espra_fileserver_cache_hits_total', { layer: 'memory' }), 1)
  t.equal(d('espra_fileserver_cache_hits_total', { layer: 'disk' }), 0)
  t.equal(d('espra_fileserver_cache_negative_hits_total'), 1)
  t.equal(d('espra_fileserver_disk_cache_fetches_total', { process: 'parent' }), 2, 'the parent fetched both keys from the store once')
  t.ok(after.value('espra_fileserver_disk_cache_objects', { process: 'parent' }) >= 1)
  t.ok(after.value('espra_fileserver_disk_cache_bytes', { process: 'parent' }) >= body.length)
  t.ok(after.value('espra_fileserver_memory_cache_bytes', { child: '0' }) >= body.length)
  const h = 'espra_fileserver_http_request_duration_seconds'
  t.equal(answered(after, h, { status: '4xx' }) - answered(before, h, { status: '4xx' }), 2, 'two 404s')
  t.equal(answered(after, h, { status: '2xx' }) - answered(before, h, { status: '2xx' }), 4, 'two uploads and two reads')
  t.end()
})
