import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBlobStore } from '../../../lib/storage/blob-store.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { blobStoreContract, readAll } from '../../helpers/blob-store-contract.js'
import { testDir } from '../../helpers/temp-dir.js'

const tmp = (name: string) => testDir(`espra-blobs-${name}-`)

t.test('contract', async (t) => {
  blobStoreContract(t, () => createBlobStore({ kind: 'local', dir: join(tmp('contract'), 'blobs') }))
})

t.test('layout: a sidecar and a bytes file per key; no temp files left', async (t) => {
  const root = tmp('layout')
  const store = await createLocalBlobStore(root)
  await store.put('a/b', Buffer.from('one'))
  await store.put('a/b', Buffer.from('two'))
  const files = readdirSync(join(root, 'a')).sort()
  t.equal(files.length, 2, 'the old bytes file is gone after an overwrite')
  t.equal(files[1], 'b#meta')
  t.match(files[0], /^b#d-[0-9a-f]{16}$/)
  t.match(JSON.parse(readFileSync(join(root, 'a', 'b#meta'), 'utf8')), { v: 1, key: 'a/b', data: files[0], size: 3 })
  await store.delete('a/b')
  t.same(readdirSync(join(root, 'a')), [], 'delete removes both files')
  const reopened = await createLocalBlobStore(root)
  await store.put('kept', Buffer.from('durable'))
  t.equal((await readAll((await reopened.get('kept'))!.body)).toString(), 'durable', 'another instance on the same root sees it')
})

t.test('group commit: nothing is visible before commit; a second commit of one staged put is refused; no files left by discard', async (t) => {
  const root = tmp('group')
  const store = await createLocalBlobStore(root)
  const staged = await Promise.all(['g/a', 'g/b'].map((k) => store.stage(k, Buffer.from(k))))
  t.equal(await store.head('g/a'), null, 'staged is not visible')
  await store.commit(staged)
  t.equal((await store.head('g/b'))?.size, 3)
  await t.rejects(store.commit([staged[0]!]), { code: 'ESPRA_ERR_STORAGE_INVALID' })
  t.same(readdirSync(join(root, 'g')).filter((f) => f.includes('#tmp-')), [], 'no temp sidecar left after commit')
  const dropped = await store.stage('g/c', Buffer.from('c'))
  await store.discard([dropped, ...staged])
  t.same(readdirSync(join(root, 'g')), [], 'discard removes bytes, sidecars and temp files')
})

t.test('a symlink inside the root never leads outside it', async (t) => {
  const root = tmp('root')
  const outside = tmp('outside')
  writeFileSync(join(outside, 'secret#meta'), JSON.stringify({ v: 1, key: 'secret', data: 'secret#d-0000000000000000', size: 6 }))
  writeFileSync(join(outside, 'secret#d-0000000000000000'), 'secret')
  const store = await createLocalBlobStore(root)
  symlinkSync(outside, join(root, 'link'))
  await t.rejects(store.put('link/x', Buffer.from('x')), { code: 'ESPRA_ERR_STORAGE_FAILED', details: { reason: 'symlink' } })
  await t.rejects(store.put('link/deeper/x', Buffer.from('x')), { code: 'ESPRA_ERR_STORAGE_FAILED' })
  t.same(readdirSync(outside).sort(), ['secret#d-0000000000000000', 'secret#meta'], 'nothing was written outside')
  await t.rejects(store.get('link/secret'), { code: 'ESPRA_ERR_STORAGE_FAILED', details: { reason: 'symlink' } })
  await t.rejects(store.head('link/secret'), { code: 'ESPRA_ERR_STORAGE_FAILED' })
  await t.rejects(store.delete('link/secret'), { code: 'ESPRA_ERR_STORAGE_FAILED' })
  t.ok(existsSync(join(outside, 'secret#meta')), 'nothing was deleted outside')
  const listed = []
  for await (const e of store.list()) listed.push(e.key)
  t.same(listed, [], 'list does not follow the link')

  // A symlinked sidecar or bytes file in a real directory is refused too (O_NOFOLLOW).
  mkdirSync(join(root, 'd'))
  symlinkSync(join(outside, 'secret#meta'), join(root, 'd', 'secret#meta'))
  await t.rejects(store.get('d/secret'), { code: 'ESPRA_ERR_STORAGE_FAILED' })
})

t.test('readers see the old object or the new one, never a mix', async (t) => {
  const store = await createLocalBlobStore(tmp('race'))
  const a = Buffer.alloc(256 * 1024, 'a')
  const b = Buffer.alloc(128 * 1024, 'b')
  await store.put('flip', a)
  let writes = 0
  const writer = (async () => {
    for (; writes < 30; writes++) await store.put('flip', writes % 2 ? a : b)
  })()
  let reads = 0
  while (writes < 30) {
    const got = await store.get('flip')
    const body = await readAll(got!.body)
    if (body.length !== got!.size || !(body.equals(a) || body.equals(b))) t.fail('a torn read')
    reads++
  }
  await writer
  t.ok(reads > 0, `${reads} reads during ${writes} overwrites`)
})

t.test('list yields keys in binary key order, as S3 does', async (t) => {
  const store = await createLocalBlobStore(tmp('order'))
  for (const key of ['l/a/b', 'l/b', 'l/a-c', 'l/a', 'l/A']) await store.put(key, Buffer.from(key))
  const keys = []
  for await (const e of store.list('l/')) keys.push(e.key)
  t.same(keys, ['l/A', 'l/a', 'l/a-c', 'l/a/b', 'l/b'])
})

t.test('a closed store refuses work', async (t) => {
  const store = await createLocalBlobStore(tmp('closed'))
  await store.close()
  await t.rejects(store.get('x'), { code: 'ESPRA_ERR_STORAGE_UNAVAILABLE' })
})

t.test('a root that cannot be created fails clearly', async (t) => {
  const file = join(tmp('file'), 'plain')
  writeFileSync(file, 'x')
  await t.rejects(createLocalBlobStore(join(file, 'blobs')), { code: 'ESPRA_ERR_STORAGE_FAILED' })
})

t.test('putFile links the file into the store (one inode, no second write), records the given etag, else the md5', async (t) => {
  const root = tmp('putfile')
  const store = await createLocalBlobStore(join(root, 'blobs'))
  const path = join(root, 'received')
  writeFileSync(path, 'the bytes as received')
  const put = await store.putFile('files/abc', path, { contentType: 'text/plain', etag: 'a'.repeat(64) })
  t.same(put, { key: 'files/abc', size: 21, etag: 'a'.repeat(64) })
  t.equal((await store.head('files/abc'))?.etag, 'a'.repeat(64), 'the sidecar holds the given tag')
  const data = readdirSync(join(root, 'blobs', 'files')).find((f) => f.startsWith('abc#d-'))!
  t.equal(statSync(join(root, 'blobs', 'files', data)).ino, statSync(path).ino, 'the stored bytes are the received file (a hard link)')
  t.equal(statSync(path).mode & 0o777, 0o640, 'with the store\'s mode')
  t.same(readdirSync(join(root, 'blobs', 'files')).filter((f) => f.includes('#tmp-')), [], 'no temp sidecar left')

  const second = join(root, 'second')
  writeFileSync(second, 'other bytes')
  const md5 = createHash('md5').update('other bytes').digest('hex')
  t.equal((await store.putFile('files/abc', second)).etag, md5, 'without an etag, the md5 of the bytes')
  t.equal((await readAll((await store.get('files/abc'))!.body)).toString(), 'other bytes', 'an overwrite replaces')
  t.equal(readdirSync(join(root, 'blobs', 'files')).filter((f) => f.startsWith('abc#d-')).length, 1, 'the old bytes file is gone')

  await t.rejects(store.putFile('files/bad', second, { etag: 'no spaces' }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
  const link = join(root, 'link')
  symlinkSync(second, link)
  await t.rejects(store.putFile('files/sym', link), { code: 'ESPRA_ERR_STORAGE_INVALID' }, 'a symlink is not taken')
  t.same(readdirSync(join(root, 'blobs', 'files')).filter((f) => f.startsWith('bad') || f.startsWith('sym')), [], 'refused puts leave no file')
})

const shmOtherDevice = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(tmpdir()).dev
t.test('putFile across file systems copies the file (here: from /dev/shm to the temp directory)', { skip: shmOtherDevice ? false : '/dev/shm is missing or on the same file system' }, async (t) => {
  const store = await createLocalBlobStore(join(tmp('exdev'), 'blobs'))
  const path = join(mkdtempSync('/dev/shm/espra-putfile-'), 'received')
  writeFileSync(path, 'bytes from another file system')
  const put = await store.putFile('x/y', path, { etag: 'e1' })
  t.same(put, { key: 'x/y', size: 30, etag: 'e1' })
  t.equal((await readAll((await store.get('x/y'))!.body)).toString(), 'bytes from another file system')
  t.ok(existsSync(path), 'the source stays')
  rmSync(join(path, '..'), { recursive: true, force: true })
})
