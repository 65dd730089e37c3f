// The fileserver's disk cache on its own, over a real local blob store whose reads are counted.
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { cacheName, openCached } from '../../../roles/fileserver/cache-file.js'
import { openDiskCache } from '../../../roles/fileserver/disk-cache.js'
import { createHotCache } from '../../../roles/fileserver/hot-cache.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import type { BlobStore } from '../../../lib/storage/blob-store.js'
import { testDir } from '../../helpers/temp-dir.js'

const log = pino({ level: 'silent' })

/** The real store, with every get counted per key (and optionally held until released). */
async function countingStore(t: Test): Promise<{ store: BlobStore; raw: BlobStore; gets: Map<string, number>; hold: (on: boolean) => void }> {
  const raw = await createLocalBlobStore(testDir('espra-dc-blobs-'))
  t.teardown(() => raw.close())
  const gets = new Map<string, number>()
  let gate: Promise<void> | null = null
  let open: (() => void) | null = null
  const store: BlobStore = Object.create(raw) as BlobStore
  store.get = async (key, opts) => {
    gets.set(key, (gets.get(key) ?? 0) + 1)
    if (gate) await gate
    return raw.get(key, opts)
  }
  return {
    store, raw, gets,
    hold(on) {
      if (on) gate = new Promise((resolve) => (open = resolve))
      else {
        gate = null
        open?.()
      }
    },
  }
}

async function readBody(dir: string, key: string): Promise<string> {
  const c = await openCached(dir, key)
  if (c === null) return '<none>'
  try {
    const buf = Buffer.alloc(c.meta.size)
    await c.fh.read(buf, 0, c.meta.size, c.offset)
    return buf.toString()
  } finally {
    await c.fh.close()
  }
}

t.test('single flight, negative cache, changed during a fill', async (t) => {
  const { store, raw, gets, hold } = await countingStore(t)
  const dir = testDir('espra-dc-')
  const cache = await openDiskCache({ dir, maxBytes: 1024 ** 2, store, log })
  await raw.put('a.txt', Buffer.from('alpha'), { contentType: 'text/plain' })
  const results = await Promise.all(Array.from({ length: 200 }, () => cache.fill('a.txt')))
  t.ok(results.every((r) => r === 'cached'))
  t.equal(gets.get('a.txt'), 1)
  t.equal(await readBody(dir, 'a.txt'), 'alpha')
  t.match((await openCached(dir, 'a.txt'))?.meta, { key: 'a.txt', size: 5, contentType: 'text/plain', contentEncoding: null })

  t.equal(await cache.fill('nope'), 'missing')
  t.equal(await cache.fill('nope'), 'missing')
  t.equal(gets.get('nope'), 1, 'the miss is remembered')
  await raw.put('nope', Buffer.from('here now'))
  cache.changed(['nope'])
  t.equal(await cache.fill('nope'), 'cached')
  t.equal(await readBody(dir, 'nope'), 'here now')

  // A change announced while a fill is running: that fill's answer may predate it, so it fetches again.
  hold(true)
  const pending = cache.fill('late')
  await new Promise((r) => setImmediate(r))
  await raw.put('late', Buffer.from('late bytes'))
  cache.changed(['late'])
  hold(false)
  t.equal(await pending, 'cached')
  t.equal(gets.get('late'), 2)

  // A change drops the cached copy (the object may have been replaced).
  await raw.put('a.txt', Buffer.from('alpha two'))
  cache.changed(['a.txt'])
  t.equal(await readBody(dir, 'a.txt'), '<none>')
  t.equal(await cache.fill('a.txt'), 'cached')
  t.equal(await readBody(dir, 'a.txt'), 'alpha two')
  await cache.close()
})

t.test('LRU eviction by last served, kept across a restart; leftovers cleaned at start', async (t) => {
  const { store, raw, gets } = await countingStore(t)
  const dir = testDir('espra-dc-')
  for (const k of ['k1', 'k2', 'k3', 'k4']) await raw.put(k, Buffer.alloc(900, k))
  let cache = await openDiskCache({ dir, maxBytes: 3500, store, log })
  for (const k of ['k1', 'k2', 'k3']) t.equal(await cache.fill(k), 'cached')
  cache.served(cacheName('k1'))
  t.equal(await cache.fill('k4'), 'cached')
  t.equal(await readBody(dir, 'k2'), '<none>', 'k2 was least recently served')
  t.not(await readBody(dir, 'k1'), '<none>', 'k1 was served after k2 and k3 were filled')
  t.ok(cache.stats().bytes <= 3500)
  await cache.close()

  // Restart: the order comes from mtimes. Make k3 the oldest, drop junk and a half-written fill in.
  const past = new Date(Date.now() - 3600_000)
  utimesSync(join(dir, 'objects', cacheName('k3')), past, past)
  writeFileSync(join(dir, 'objects', 'not-a-hash'), 'junk')
  mkdirSync(join(dir, 'tmp'), { recursive: true })
  writeFileSync(join(dir, 'tmp', `${cacheName('k9')}.1.abc`), 'half')
  cache = await openDiskCache({ dir, maxBytes: 3500, store, log })
  t.same(readdirSync(join(dir, 'tmp')), [], 'half-written fills removed')
  t.notOk(readdirSync(join(dir, 'objects')).includes('not-a-hash'), 'foreign files removed')
  t.equal(cache.stats().objects, 3)
  const before = gets.get('k1')
  t.equal(await cache.fill('k1'), 'cached')
  t.equal(gets.get('k1'), before, 'a cached object survives the restart')
  t.equal(await cache.fill('k2'), 'cached')
  t.equal(await readBody(dir, 'k3'), '<none>', 'k3 (oldest mtime) evicted first after the restart')
  await cache.close()

  // A smaller bound at start evicts down to it.
  cache = await openDiskCache({ dir, maxBytes: 1500, store, log })
  t.ok(cache.stats().bytes <= 1500)
  t.equal(cache.stats().objects, 1)
  // Larger than the whole cache: not kept.
  await raw.put('huge', Buffer.alloc(4000))
  t.equal(await cache.fill('huge'), 'too-big')
  t.equal(await readBody(dir, 'huge'), '<none>')
  await cache.close()
})

t.test('a damaged or foreign cache file is a miss, never wrong bytes', async (t) => {
  const dir = testDir('espra-dc-')
  mkdirSync(join(dir, 'objects'))
  writeFileSync(join(dir, 'objects', cacheName('x')), 'espra-cache-1\n{"key":"other","size":3}\nabc')
  t.equal(await openCached(dir, 'x'), null, 'another key under this name')
  writeFileSync(join(dir, 'objects', cacheName('y')), 'espra-cache-1\n{"key":"y","size":10}\nabc')
  t.equal(await openCached(dir, 'y'), null, 'short file')
  writeFileSync(join(dir, 'objects', cacheName('z')), 'garbage')
  t.equal(await openCached(dir, 'z'), null, 'not a cache file')
})

t.test('hot cache: whole bodies of small objects in memory, bounded, forgotten on a change', async (t) => {
  const { store, raw } = await countingStore(t)
  const dir = testDir('espra-dc-')
  const cache = await openDiskCache({ dir, maxBytes: 1024 ** 2, store, log })
  for (const [key, size] of [['a', 400], ['b', 400], ['c', 400], ['big', 600]] as const) {
    await raw.put(key, Buffer.alloc(size, key), { contentType: 'text/plain' })
    t.equal(await cache.fill(key), 'cached')
  }
  const hot = createHotCache({ maxBytes: 1000, maxObjectBytes: 500 })
  /** Opens the cached file, loads it into memory, closes the file. */
  const load = async (key: string) => {
    const file = (await openCached(dir, key))!
    try {
      return await hot.load(file)
    } finally {
      await file.fh.close()
    }
  }
  t.equal(hot.get('a'), undefined)
  t.same((await load('a'))?.body, Buffer.alloc(400, 'a'))
  t.match(hot.get('a')?.meta, { key: 'a', size: 400, contentType: 'text/plain' })
  t.equal(await load('big'), null, 'over maxObjectBytes: not kept')
  await load('b')
  hot.get('a')
  await load('c')
  t.same(hot.stats(), { objects: 2, bytes: 800 }, 'within maxBytes')
  t.equal(hot.get('b'), undefined, 'the least recently served went first')
  t.ok(hot.get('a') && hot.get('c'))
  hot.forget(['a'], false)
  t.equal(hot.get('a'), undefined, 'a change for the key drops it')
  hot.forget([], true)
  t.same(hot.stats(), { objects: 0, bytes: 0 }, 'a change for all drops everything')

  // A change that comes in while a load reads: the bytes are answered once, not kept.
  const file = (await openCached(dir, 'a'))!
  const loading = hot.load(file)
  hot.forget(['a'], false)
  t.ok(await loading)
  await file.fh.close()
  t.equal(hot.get('a'), undefined)
  await cache.close()
})
