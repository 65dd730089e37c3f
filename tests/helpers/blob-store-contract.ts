/**
 * The blob-store contract, written once and run against every backend
 * (tests/lib/storage/local-blob-store.test.ts, s3-blob-store.test.ts).
 */
import type { Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { BlobStore } from '../../lib/storage/blob-store.js'
import { testDir } from './temp-dir.js'

export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export async function sha256(body: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of body) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { digest: hash.digest('hex'), size }
}

/** A stream of `size` pseudo-random bytes in uneven chunks, and the sha256 it must hash to. */
export function randomStream(size: number): { stream: Readable; digest: string } {
  const data = randomBytes(size)
  const chunks: Buffer[] = []
  for (let off = 0; off < size; ) {
    const n = Math.min(size - off, 1000 + ((off * 7919) % 70_000))
    chunks.push(data.subarray(off, off + n))
    off += n
  }
  return { stream: Readable.from(chunks), digest: createHash('sha256').update(data).digest('hex') }
}

export const HOSTILE_KEYS = ['../x', '%2e%2e/x', '/abs', 'a\0b', 'a/../b', 'a/./b', 'a//b', 'a/', '', 'a\\b', 'a b', 'x'.repeat(1025), `${'y'.repeat(201)}/z`]

async function collect(store: BlobStore, prefix?: string): Promise<string[]> {
  const keys: string[] = []
  for await (const e of store.list(prefix)) keys.push(e.key)
  return keys
}

export interface ContractOptions {
  /**
   * Range forms the backend's server answers wrongly (s3rver: suffix ranges
   * and `bytes=0-0`). For these the contract expects the backend to notice
   * and fail with `ESPRA_ERR_STORAGE_FAILED` rather than serve wrong bytes.
   */
  readonly brokenRanges?: readonly string[]
}

/** Runs the whole contract as subtests of `t` against the store `open` returns (one fresh, empty store per run). */
export function blobStoreContract(t: Test, open: () => Promise<BlobStore>, options: ContractOptions = {}): void {
  let store: BlobStore
  t.before(async () => {
    store = await open()
  })
  t.teardown(() => store?.close())

  t.test('put and get a buffer with type, encoding and metadata', async (t) => {
    const body = Buffer.from('hello, blob')
    const put = await store.put('docs/hello.txt', body, { contentType: 'text/plain; charset=utf-8', contentEncoding: 'identity', metadata: { 'sha-256': 'abc', origin: 'test' } })
    t.same(put, { key: 'docs/hello.txt', size: body.length, etag: createHash('md5').update(body).digest('hex') })
    const got = await store.get('docs/hello.txt')
    t.ok(got)
    t.same(await readAll(got!.body), body)
    t.match(got, { key: 'docs/hello.txt', size: body.length, contentType: 'text/plain; charset=utf-8', contentEncoding: 'identity', etag: put.etag, range: null })
    t.same(got!.metadata, { 'sha-256': 'abc', origin: 'test' })
    t.ok(got!.lastModified instanceof Date && Math.abs(got!.lastModified.getTime() - Date.now()) < 60_000, 'lastModified is now')
    const head = await store.head('docs/hello.txt')
    t.match(head, { key: 'docs/hello.txt', size: body.length, contentType: 'text/plain; charset=utf-8', etag: put.etag })
    t.same(head!.metadata, { 'sha-256': 'abc', origin: 'test' })
  })

  t.test('defaults: octet-stream, no encoding, no metadata; an empty body', async (t) => {
    await store.put('empty', Buffer.alloc(0))
    const got = await store.get('empty')
    t.match(got, { size: 0, contentType: 'application/octet-stream', contentEncoding: null })
    t.same(got!.metadata, {})
    t.equal((await readAll(got!.body)).length, 0)
  })

  t.test('a streamed body larger than 5 MB goes through byte-exact', async (t) => {
    const size = 12 * 1024 * 1024 + 12_345
    const { stream, digest } = randomStream(size)
    const put = await store.put('big/object.bin', stream, { contentType: 'application/x-test' })
    t.equal(put.size, size)
    const got = await store.get('big/object.bin')
    t.equal(got!.size, size)
    t.equal(got!.contentType, 'application/x-test')
    t.same(await sha256(got!.body), { digest, size }, 'sha256 of what comes back matches what went in')
    t.equal((await store.head('big/object.bin'))!.etag, put.etag)
  })

  t.test('range reads', async (t) => {
    const body = Buffer.from('0123456789')
    await store.put('ranges', body)
    const cases: [Parameters<BlobStore['get']>[1], string, { start: number; end: number }][] = [
      [{ range: { start: 2, end: 5 } }, '2345', { start: 2, end: 5 }],
      [{ range: { start: 7 } }, '789', { start: 7, end: 9 }],
      [{ range: { suffix: 3 } }, '789', { start: 7, end: 9 }],
      [{ range: { suffix: 50 } }, '0123456789', { start: 0, end: 9 }],
      [{ range: { start: 8, end: 100 } }, '89', { start: 8, end: 9 }],
      [{ range: { start: 0, end: 0 } }, '0', { start: 0, end: 0 }],
    ]
    for (const [opts, want, span] of cases) {
      if (options.brokenRanges?.includes(JSON.stringify(opts!.range))) {
        await t.rejects(store.get('ranges', opts), { code: 'ESPRA_ERR_STORAGE_FAILED', details: { reason: 'range' } }, `the server gets ${JSON.stringify(opts)} wrong: noticed`)
        continue
      }
      const got = await store.get('ranges', opts)
      t.equal((await readAll(got!.body)).toString(), want, JSON.stringify(opts))
      t.same(got!.range, span)
      t.equal(got!.size, 10, 'size is the whole object')
    }
    await t.rejects(store.get('ranges', { range: { start: 10 } }), { code: 'ESPRA_ERR_STORAGE_RANGE' }, 'start past the end: 416')
    await t.rejects(store.get('ranges', { range: { start: 10 } }), { details: { size: 10 }, message: /\(.* is 10 bytes\)$/ }, 'the 416 names the size of the object')
    await t.rejects(store.get('ranges', { range: { start: 5, end: 2 } }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
    await t.rejects(store.get('ranges', { range: { start: -1 } }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
    t.equal(await store.get('missing', { range: { start: 0 } }), null, 'a range on a missing key is still a miss')
  })

  t.test('missing keys are null, deleting them is fine', async (t) => {
    t.equal(await store.get('no/such/key'), null)
    t.equal(await store.head('no/such/key'), null)
    t.equal(await store.get('nodir'), null)
    await store.delete('no/such/key')
    t.pass('delete of a missing key does not throw')
  })

  t.test('overwrite replaces; delete removes', async (t) => {
    await store.put('swap', Buffer.from('first'), { metadata: { n: '1' } })
    await store.put('swap', Buffer.from('second, longer'), { metadata: { n: '2' } })
    const got = await store.get('swap')
    t.equal((await readAll(got!.body)).toString(), 'second, longer')
    t.same(got!.metadata, { n: '2' })
    await store.delete('swap')
    t.equal(await store.get('swap'), null)
    t.equal(await store.head('swap'), null)
  })

  t.test('list by prefix; a key and a longer key under it coexist', async (t) => {
    for (const key of ['l/a', 'l/a/b', 'l/a-c', 'l/b/c/d', 'l/b/c/e', 'm/x']) await store.put(key, Buffer.from(key))
    t.same((await collect(store, 'l/')).sort(), ['l/a', 'l/a-c', 'l/a/b', 'l/b/c/d', 'l/b/c/e'])
    t.same((await collect(store, 'l/a')).sort(), ['l/a', 'l/a-c', 'l/a/b'], 'a prefix may end inside a segment')
    t.same((await collect(store, 'l/b/c/')).sort(), ['l/b/c/d', 'l/b/c/e'])
    t.same(await collect(store, 'nothing/'), [])
    const entries = []
    for await (const e of store.list('l/b/')) entries.push(e)
    t.match(entries[0], { key: 'l/b/c/d', size: 7 })
    t.ok(entries[0]!.lastModified instanceof Date)
    t.equal((await readAll((await store.get('l/a'))!.body)).toString(), 'l/a')
    t.equal((await readAll((await store.get('l/a/b'))!.body)).toString(), 'l/a/b')
    t.ok((await collect(store)).includes('m/x'), 'no prefix lists everything')
  })

  t.test('hostile keys are refused before any I/O', async (t) => {
    for (const key of HOSTILE_KEYS) {
      const name = JSON.stringify(key.slice(0, 20))
      await t.rejects(store.put(key, Buffer.from('x')), { code: 'ESPRA_ERR_STORAGE_KEY' }, `put ${name}`)
      await t.rejects(store.get(key), { code: 'ESPRA_ERR_STORAGE_KEY' }, `get ${name}`)
      await t.rejects(store.head(key), { code: 'ESPRA_ERR_STORAGE_KEY' }, `head ${name}`)
      await t.rejects(store.delete(key), { code: 'ESPRA_ERR_STORAGE_KEY' }, `delete ${name}`)
    }
    await t.rejects(collect(store, '../'), { code: 'ESPRA_ERR_STORAGE_KEY' }, 'list prefix')
    await t.rejects(collect(store, '/etc'), { code: 'ESPRA_ERR_STORAGE_KEY' }, 'list prefix')
  })

  t.test('bad put options are refused', async (t) => {
    await t.rejects(store.put('opts', Buffer.from('x'), { metadata: { Upper: 'x' } }), { code: 'ESPRA_ERR_STORAGE_INVALID', details: { field: 'metadata.Upper' } })
    await t.rejects(store.put('opts', Buffer.from('x'), { metadata: { k: 'line\nbreak' } }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
    await t.rejects(store.put('opts', Buffer.from('x'), { metadata: { k: 'v'.repeat(1000), l: 'v'.repeat(1000), m: 'v'.repeat(100) } }), { code: 'ESPRA_ERR_STORAGE_INVALID', details: { field: 'metadata' } })
    await t.rejects(store.put('opts', Buffer.from('x'), { contentType: 'text/plain\r\nx: y' }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
    await t.rejects(store.put('opts', Buffer.from('x'), { contentEncoding: 'gz ip' }), { code: 'ESPRA_ERR_STORAGE_INVALID' })
    t.equal(await store.head('opts'), null, 'nothing was stored')
  })

  t.test('a failing body stream fails the put with its own error and stores nothing', async (t) => {
    const body = new Readable({ read() {} })
    body.push(randomBytes(1000))
    setTimeout(() => body.destroy(new Error('source broke')), 20)
    await t.rejects(store.put('broken', body), { message: 'source broke' })
    t.equal(await store.head('broken'), null)
  })

  t.test('group commit: staged puts are stored by commit, each readable; discard removes them', async (t) => {
    const bodies = Array.from({ length: 12 }, (_, i) => randomBytes(1000 + i))
    const staged = await Promise.all(bodies.map((b, i) => store.stage(`group/${i % 3}/m${i}`, i % 2 ? b : Readable.from([b]), { contentType: 'message/rfc822' })))
    t.same(staged.map((s) => s.size), bodies.map((b) => b.length), 'each staged put counts its bytes')
    await store.commit(staged)
    for (const [i, b] of bodies.entries()) {
      const got = await store.get(`group/${i % 3}/m${i}`)
      t.equal(got?.contentType, 'message/rfc822')
      t.ok(got !== null && (await readAll(got.body)).equals(b), `object ${i} is byte-exact`)
    }
    await store.discard(staged.slice(0, 4))
    t.same(await Promise.all([0, 1, 2, 3, 4].map((i) => store.head(`group/${i % 3}/m${i}`).then((h) => h !== null))), [false, false, false, false, true], 'discard after commit removes those objects only')

    const dropped = await store.stage('group/dropped', Buffer.from('never committed'))
    await store.discard([dropped])
    t.equal(await store.head('group/dropped'), null, 'a discarded staged put leaves nothing')
    await store.commit([])
    t.pass('an empty group commits')
  })

  t.test('putFile stores a finished file byte-exact with its options and leaves the file in place', async (t) => {
    const path = join(testDir('espra-putfile-'), 'received')
    const data = randomBytes(300_000)
    writeFileSync(path, data)
    const put = await store.putFile('files/taken', path, { contentType: 'image/png', metadata: { sha256: 'x' } })
    t.equal(put.size, data.length)
    const got = await store.get('files/taken')
    t.equal(got?.contentType, 'image/png')
    t.same(got?.metadata, { sha256: 'x' })
    t.ok(got !== null && (await readAll(got.body)).equals(data), 'byte-exact')
    t.ok(existsSync(path) && readFileSync(path).equals(data), 'the file is still there, unchanged')
    await t.rejects(store.putFile('files/none', join(path, '..', 'missing')), 'a missing file fails the put')
    t.equal(await store.head('files/none'), null, 'and stores nothing')
  })
}
