// Push-build uploads' records against a real seed's datastore: a manifest of 5,000 files far over one value's 64 KB
// comes back whole from its pages; the hashes asked for are found by bucket; of two commits at once one moves the
// upload; the sweep deletes uploads past their hour and parts left without a header, and keeps the rest.
import { createHash } from 'node:crypto'
import t from 'tap'
import type { BuildManifest } from '../../../lib/builds/manifest.js'
import { listAll } from '../../../lib/storage/datastore.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { askedHashes, askedSize, createPush, movePush, newPushId, PUSH_TTL_MS, readManifest, readPush, sweepPushes, type PushHeader } from '../../../roles/admin/api-push-store.js'
import { client, startTestSeed } from '../../helpers/seed.js'

const { port } = await startTestSeed(t)
const link = client(t, port)
await link.ready
const ds = createDatastoreClient(link)
const NOW = Date.UTC(2026, 11, 3, 7, 0, 0)
const sha = (s: string) => createHash('sha256').update(s).digest('hex')

function header(id: string, files: number, at = NOW): PushHeader {
  return { id, operator: 'ops', state: 'open', createdAt: at, expiresAt: at + PUSH_TTL_MS, message: '', canary: null, files, bytes: 0, pages: 0, missing: 0, missingBytes: 0, build: null }
}

t.test('5,000 files in pages, the asked hashes by bucket, one commit of two', async (t) => {
  const manifest: BuildManifest = { files: Array.from({ length: 5000 }, (_, i) => ({ path: `public/${'d/'.repeat(40)}file-${i}.txt`, size: i, hash: sha(String(i)), type: 'text/plain; charset=utf-8' })) }
  const missing = new Map(manifest.files.slice(0, 3000).map((f) => [f.hash, f.size]))
  const id = newPushId(NOW)
  await createPush(ds, header(id, 5000), manifest, missing)
  const h = await readPush(ds, id, NOW)
  t.ok(h.pages > 5, `${h.pages} pages`)
  t.same(await readManifest(ds, h), manifest, 'the manifest whole, in order')
  t.equal(await askedSize(ds, id, manifest.files[42]!.hash), 42)
  t.equal(await askedSize(ds, id, manifest.files[4000]!.hash), null, 'a hash the blob store had: not asked for')
  t.same(await askedHashes(ds, id), missing)
  const moves = await Promise.all([movePush(ds, h, 'committing'), movePush(ds, h, 'committing')])
  t.same(moves.sort(), [false, true], 'exactly one commit moves it')
  t.equal((await readPush(ds, id, NOW)).state, 'committing')
  await t.rejects(readPush(ds, id, NOW + PUSH_TTL_MS), { code: 'ESPRA_ERR_ADMIN_PUSH_NOT_FOUND' }, 'past its hour: not found')
})

t.test('the sweep: uploads past their hour and headerless parts go, younger ones stay', async (t) => {
  const file = { path: 'a', size: 1, hash: sha('a'), type: 'text/plain' }
  const old = newPushId(NOW - 2 * PUSH_TTL_MS)
  const young = newPushId(NOW)
  await createPush(ds, header(old, 1, NOW - 2 * PUSH_TTL_MS), { files: [file] }, new Map([[file.hash, 1]]))
  await createPush(ds, header(young, 1), { files: [file] }, new Map([[file.hash, 1]]))
  const orphan = newPushId(NOW - 2 * PUSH_TTL_MS)
  await ds.put('adminJobs', `push/${orphan}/m/0000`, { files: [file] })
  const swept = await sweepPushes(ds, NOW)
  t.ok(swept >= 2, `${swept} swept`)
  const left = new Set<string>()
  for await (const e of listAll(ds, 'adminJobs', 'push/')) left.add(e.key.split('/')[1]!)
  t.notOk(left.has(old), 'the old upload is gone')
  t.notOk(left.has(orphan), 'the part without a header is gone')
  t.ok(left.has(young), 'the young one stays')
  t.equal((await readPush(ds, young, NOW)).files, 1)
})
