// The seed's vhost.set / vhost.rm on a real seed: records in the datastore's vhosts kind and the vhosts.changed
// pushes a subscriber (a fileserver's link) receives, in order, after each change.
import t from 'tap'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { until } from '../helpers/meta.js'
import { client, startTestSeed } from '../helpers/seed.js'

const { port } = await startTestSeed(t)
const pushes: unknown[] = []
const subscriber = client(t, port, {
  onPush: (op, body) => op === 'vhosts.changed' && pushes.push(body),
  onConnect: async (link) => void (await link.request('subscribe', { vhosts: true })),
})
const admin = client(t, port)
await Promise.all([subscriber.ready, admin.ready])
const ds = createDatastoreClient(admin)
const sha = 'cd'.repeat(32)
await ds.put('files', sha, { key: `files/${sha}`, size: 12, sha256: sha, type: 'text/html', encoding: 'gzip', storedAt: 1 })

t.test('a subscription first gets {all: true}', async (t) => {
  await until(() => pushes.length === 1, 3000, 'the first push')
  t.same(pushes.shift(), { all: true })
})

t.test('set writes the host record and the mapping, then pushes', async (t) => {
  const answer = await admin.request<{ mapping: Record<string, unknown>; previous: string | null }>('vhost.set', { host: 'a.test', path: '/index.html', file: `files/${sha}` })
  t.match(answer.mapping, { host: 'a.test', path: '/index.html', file: `files/${sha}`, sha256: sha, size: 12, type: 'text/html', encoding: 'gzip' })
  t.type(answer.mapping['at'], 'number')
  t.equal(answer.previous, null)
  t.match(await ds.get('vhosts', 'a.test/index.html'), { file: `files/${sha}` })
  t.match(await ds.get('vhosts', 'host:a.test'), { host: 'a.test' })
  await until(() => pushes.length === 1, 3000, 'the push')
  t.same(pushes.shift(), { host: 'a.test', paths: ['/index.html'], registered: true })

  const again = await admin.request<{ previous: string | null }>('vhost.set', { host: 'a.test', path: '/b.html', file: sha })
  t.equal(again.previous, null)
  await until(() => pushes.length === 1, 3000, 'the second push')
  t.same(pushes.shift(), { host: 'a.test', paths: ['/b.html'], registered: true })
  const replaced = await admin.request<{ previous: string | null }>('vhost.set', { host: 'a.test', path: '/b.html', file: sha })
  t.equal(replaced.previous, `files/${sha}`, 'names the file it replaced')
  await until(() => pushes.length === 1, 3000, 'the third push')
  pushes.shift()
})

t.test('an unknown file is refused and nothing is written or pushed', async (t) => {
  const err = await admin.request('vhost.set', { host: 'b.test', path: '/x', file: `files/${'0'.repeat(64)}` }).then(() => null, (e: { code: string }) => e)
  t.equal(err?.code, 'ESPRA_ERR_VHOST_FILE_MISSING')
  t.equal(await ds.get('vhosts', 'host:b.test'), null)
  t.equal(await ds.get('vhosts', 'b.test/x'), null)
})

t.test('rm of one path keeps the host registered; rm of the host removes every mapping and the host record', async (t) => {
  t.same(await admin.request('vhost.rm', { host: 'a.test', path: '/b.html' }), { removed: 1, registered: true })
  await until(() => pushes.length === 1, 3000, 'the rm push')
  t.same(pushes.shift(), { host: 'a.test', paths: ['/b.html'], registered: true })
  t.same(await admin.request('vhost.rm', { host: 'a.test', path: '/b.html' }), { removed: 0, registered: true }, 'nothing left to remove')

  await admin.request('vhost.set', { host: 'a.test', path: '/c/d.html', file: sha })
  await until(() => pushes.length === 1, 3000, 'the set push')
  pushes.shift()
  t.same(await admin.request('vhost.rm', { host: 'a.test' }), { removed: 2, registered: false })
  await until(() => pushes.length === 1, 3000, 'the rm-all push')
  t.same(pushes.shift(), { host: 'a.test', paths: null, registered: false })
  t.same((await ds.list('vhosts')).entries, [], 'no mapping and no host record left')
})

t.test('a second subscription gets {all: true} too; a malformed vhosts flag is refused', async (t) => {
  const later: unknown[] = []
  const c = client(t, port, {
    onPush: (op, body) => op === 'vhosts.changed' && later.push(body),
    onConnect: async (link) => void (await link.request('subscribe', { vhosts: true })),
  })
  await c.ready
  await until(() => later.length === 1, 3000, 'the all push')
  t.same(later, [{ all: true }])
  const bad = await c.request('subscribe', { vhosts: 'yes' }).then(() => null, (e: { code: string }) => e)
  t.equal(bad?.code, 'ESPRA_ERR_META_BAD_REQUEST')
})
