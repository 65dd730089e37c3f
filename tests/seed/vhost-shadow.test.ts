// Regression: `admin vhost set localhost ...` silently hid /app, /f and /upload for that Host on
// every fileserver. A vhost named like the cluster's own host is refused unless forced.
import t from 'tap'
import { hostname } from 'node:os'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { shadowReason } from '../../seed/vhosts.js'
import { SECRET } from '../helpers/meta.js'
import { client, startTestSeed } from '../helpers/seed.js'
import { runCli } from '../helpers/up.js'

const { port } = await startTestSeed(t)
const admin = client(t, port)
await admin.ready
const ds = createDatastoreClient(admin)
const sha = 'ef'.repeat(32)
await ds.put('files', sha, { key: `files/${sha}`, size: 5, sha256: sha, type: 'text/html', encoding: null, storedAt: 1 })
const env = { ...process.env, ESPRA_SECRET: SECRET }

t.test('which hosts are the cluster\'s own', async (t) => {
  t.equal(shadowReason('localhost', 'box'), 'a loopback name (localhost)')
  t.ok(shadowReason('us-1.live.localhost', 'box'), '*.localhost')
  t.match(shadowReason('box', 'box'), /this machine's host name/)
  t.equal(shadowReason('www.example.com', 'box'), null)
  t.equal(shadowReason('localhost.example.com', 'box'), null, 'only the name itself or under .localhost')
})

t.test('vhost.set refuses the own host unless force; nothing is written', async (t) => {
  for (const host of ['localhost', 'files.localhost', hostname().toLowerCase()].filter((h) => /^[a-z0-9.-]+$/.test(h) && !/^\d+(\.\d+){3}$/.test(h))) {
    const err = await admin.request('vhost.set', { host, path: '/index.html', file: `files/${sha}` }).then(() => null, (e: { code: string; message: string }) => e)
    t.equal(err?.code, 'ESPRA_ERR_VHOST_SHADOWS', `${host} refused`)
    t.match(err?.message, 'pass force (admin vhost set --force)')
    t.equal(await ds.get('vhosts', `host:${host}`), null, 'no host record')
  }
  const bad = await admin.request('vhost.set', { host: 'localhost', path: '/a', file: sha, force: 'yes' }).then(() => null, (e: { code: string }) => e)
  t.equal(bad?.code, 'ESPRA_ERR_META_BAD_REQUEST', 'force must be a boolean')
  const forced = await admin.request<{ mapping: { host: string } }>('vhost.set', { host: 'localhost', path: '/forced.html', file: sha, force: true })
  t.equal(forced.mapping.host, 'localhost', 'forced: written')
  t.match(await ds.get('vhosts', 'localhost/forced.html'), { file: `files/${sha}` })
  await admin.request('vhost.rm', { host: 'localhost' })
  t.match(await admin.request('vhost.set', { host: 'www.example.com', path: '/i.html', file: sha }), { mapping: { host: 'www.example.com' } }, 'other hosts as before')
})

t.test('admin vhost set: refused with the reason (exit 1); --force maps it', async (t) => {
  const seed = ['--seed', `127.0.0.1:${port}`]
  const refused = await runCli(['admin', 'vhost', 'set', 'localhost', '/index.html', `files/${sha}`, ...seed], { env })
  t.equal(refused.code, 1)
  t.equal(refused.stderr.trim().split('\n').length, 1, 'one line')
  t.match(refused.stderr, /^espra-node: ESPRA_ERR_VHOST_SHADOWS: localhost is a loopback name .*pass force \(admin vhost set --force\) to map it anyway\n$/)
  const forced = await runCli(['admin', 'vhost', 'set', 'localhost', '/index.html', `files/${sha}`, '--force', ...seed], { env })
  t.equal(forced.code, 0, forced.stderr)
  t.equal(forced.stdout, `localhost/index.html -> files/${sha} (text/html, 5 B)\n`)
})
