import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { IN_FLIGHT_BYTES, ThreadHash } from '../../../lib/uploads/hash-thread.js'

const local = (algorithm: string, data: Buffer) => createHash(algorithm).update(data).digest('hex')

t.test('digests match the main thread\'s over uneven chunks; two hashes at once stay apart', async (t) => {
  const a = randomBytes(3_000_000)
  const b = randomBytes(1_234_567)
  const ha = new ThreadHash('sha256')
  const hb = new ThreadHash('md5')
  for (let off = 0, i = 0; off < a.length; i++) {
    const n = 1 + ((i * 7919) % 200_000)
    ha.update(a.subarray(off, off + n))
    if (off < b.length) hb.update(b.subarray(off, Math.min(off + n, b.length)))
    off += n
  }
  t.equal(await ha.digest(), local('sha256', a))
  t.equal(await hb.digest(), local('md5', b))
})

t.test('the caller is told to wait once more than IN_FLIGHT_BYTES are queued, and drained() resolves when the thread caught up', async (t) => {
  const h = new ThreadHash('sha256')
  const chunk = randomBytes(1024 * 1024)
  let asked = false
  const all: Buffer[] = []
  for (let i = 0; i < 3 * IN_FLIGHT_BYTES / chunk.length; i++) {
    all.push(chunk)
    if (!h.update(chunk)) {
      asked = true
      await h.drained()
    }
  }
  t.ok(asked, 'update returned false at least once')
  t.equal(await h.digest(), local('sha256', Buffer.concat(all)))
})

t.test('an empty hash; a chunk the caller reuses after update does not change the digest (the thread got a copy)', async (t) => {
  t.equal(await new ThreadHash('sha256').digest(), local('sha256', Buffer.alloc(0)))
  const h = new ThreadHash('sha256')
  const buf = Buffer.from('first')
  h.update(buf)
  buf.write('XXXXX')
  t.equal(await h.digest(), local('sha256', Buffer.from('first')))
})

t.test('an unknown algorithm fails the digest with a coded error; an abandoned hash ends quietly', async (t) => {
  const bad = new ThreadHash('no-such-hash')
  bad.update(Buffer.from('x'))
  await t.rejects(bad.digest(), { code: 'ESPRA_ERR_INTERNAL', message: /hash thread/ })
  const dropped = new ThreadHash('sha256')
  dropped.update(Buffer.from('x'))
  dropped.abandon()
  const after = new ThreadHash('sha256')
  after.update(Buffer.from('y'))
  t.equal(await after.digest(), local('sha256', Buffer.from('y')), 'the thread still serves new hashes')
})

function hasWhirlpool(): boolean {
  try {
    createHash('whirlpool')
    return true
  } catch {
    return false
  }
}

t.test('whirlpool on the thread (run with NODE_OPTIONS=--openssl-legacy-provider)', { skip: hasWhirlpool() ? false : 'no legacy provider in this process' }, async (t) => {
  const data = randomBytes(500_000)
  const h = new ThreadHash('whirlpool')
  h.update(data)
  t.equal(await h.digest(), local('whirlpool', data))
})
