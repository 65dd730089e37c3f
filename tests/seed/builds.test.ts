// The seed's build.* ops against a real seed over the meta port: plan, chunked and verified uploads, commit, rollback, pushes.
import { createHash } from 'node:crypto'
import t from 'tap'
import type { BuildPush } from '../../lib/builds/manifest.js'
import { client, startTestSeed } from '../helpers/seed.js'
import { until } from '../helpers/meta.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

t.test('plan, upload in chunks, commit, push to subscribers, rollback, list', async (t) => {
  const { port, seed } = await startTestSeed(t, { maxFrame: 4096 })
  t.ok(seed)
  const pushes: BuildPush[] = []
  const c = client(t, port, { onPush: (op, body) => op === 'build' && pushes.push(body as BuildPush) })
  await c.ready
  await c.request('subscribe', { builds: true })

  const big = Buffer.alloc(10_000, 7)
  const small = Buffer.from('hello')
  const manifest = { files: [
    { path: 'big.bin', size: big.length, hash: sha(big), type: 'application/octet-stream' },
    { path: 'a/small.txt', size: small.length, hash: sha(small), type: 'text/plain' },
    { path: 'a/same.txt', size: small.length, hash: sha(small), type: 'text/plain' },
  ] }
  const plan = await c.request<{ missing: string[]; chunkSize: number }>('build.plan', { manifest })
  t.same(plan.missing.sort(), [sha(big), sha(small)].sort(), 'each hash once')
  t.ok(plan.chunkSize <= 4096 - 1024, 'chunks fit the frame limit')

  await t.rejects(c.request('build.commit', { manifest }), { code: 'ESPRA_ERR_BUILD_MISSING_BLOBS' })
  await t.rejects(c.request('build.blob', { hash: sha(small), offset: 5, chunk: small, last: true }), { code: 'ESPRA_ERR_BUILD_UPLOAD' })
  await t.rejects(c.request('build.blob', { hash: sha(big), offset: 0, chunk: small, last: true }), { code: 'ESPRA_ERR_BUILD_HASH_MISMATCH' })
  await t.rejects(c.request('build.blob', { hash: 'nope', offset: 0, chunk: small, last: true }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'hash' } })
  await t.rejects(c.request('build.plan', { manifest: { files: [{ ...manifest.files[0], path: '../x' }] } }), { code: 'ESPRA_ERR_BUILD_INVALID' })

  for (let offset = 0; offset < big.length; offset += plan.chunkSize) {
    const chunk = big.subarray(offset, offset + plan.chunkSize)
    await c.request('build.blob', { hash: sha(big), offset, chunk, last: offset + chunk.length >= big.length })
  }
  await c.request('build.blob', { hash: sha(small), offset: 0, chunk: small, last: true })
  t.same((await c.request<{ missing: string[] }>('build.plan', { manifest })).missing, [])

  const b1 = await c.request<{ id: string; uploadedBytes: number; files: number }>('build.commit', { manifest, message: 'one' })
  t.match(b1, { id: 'b1', files: 3 })
  t.equal(b1.uploadedBytes, big.length + small.length + small.length, 'counts every byte received, rejected ones too')
  await until(() => pushes.some((p) => p.id === 'b1'), 3000, 'b1 pushed')
  t.same(pushes.at(-1)!.manifest, manifest)

  const b2 = await c.request<{ id: string; uploadedBytes: number }>('build.commit', { manifest: { files: [manifest.files[1]!] } })
  t.match(b2, { id: 'b2', uploadedBytes: 0 })
  t.match(await c.request('build.current', {}), { id: 'b2' })
  await c.request('build.rollback', { id: 'b1' })
  await until(() => pushes.at(-1)!.id === 'b1', 3000, 'rollback pushed')
  await t.rejects(c.request('build.rollback', { id: 'b7' }), { code: 'ESPRA_ERR_BUILD_NOT_FOUND' })
  await t.rejects(c.request('build.rollback', { id: '../b1' }), { code: 'ESPRA_ERR_BUILD_INVALID' })
  const list = await c.request<{ current: string; builds: { id: string; current: boolean; message: string }[] }>('build.list', {})
  t.equal(list.current, 'b1')
  t.match(list.builds, [{ id: 'b2', current: false }, { id: 'b1', current: true, message: 'one' }])

  // A late subscriber gets the current build at once.
  const late: BuildPush[] = []
  const d = client(t, port, { onPush: (op, body) => op === 'build' && late.push(body as BuildPush) })
  await d.ready
  await d.request('subscribe', { builds: true })
  await until(() => late.length === 1, 3000, 'current build pushed on subscribe')
  t.equal(late[0]!.id, 'b1')
})

t.test('build.commit takes a pushId, keeps it in the record and lists it; a malformed one records nothing', async (t) => {
  const { port } = await startTestSeed(t)
  const c = client(t, port)
  await c.ready
  const bytes = Buffer.from('pushed once')
  const manifest = { files: [{ path: 'a.txt', size: bytes.length, hash: sha(bytes), type: 'text/plain' }] }
  await c.request('build.blob', { hash: sha(bytes), offset: 0, chunk: bytes, last: true })
  for (const pushId of ['short', 'x'.repeat(65), 'has space 123', 42]) {
    await t.rejects(c.request('build.commit', { manifest, pushId }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'pushId' } }, `refused: ${JSON.stringify(pushId)}`)
  }
  t.match(await c.request('build.commit', { manifest, pushId: 'Ab3_-xyz789' }), { id: 'b1' }, 'no number was used by the refused ones')
  const list = await c.request<{ builds: { id: string; pushId?: string }[] }>('build.list', {})
  t.match(list.builds, [{ id: 'b1', pushId: 'Ab3_-xyz789' }])
})
