// Fileserver options: --app-path stays clear of the paths the fileserver itself answers; --upload-expiry bounds.
import t from 'tap'
import { loadConfig } from '../../../lib/core/config.js'

const env = { ESPRA_SECRET: 'x'.repeat(32) }
const load = (flags: Record<string, unknown>) => loadConfig({ flags: { role: 'fileserver', ...flags }, env })

t.test('--app-path refuses the upload paths', async (t) => {
  t.equal(load({ appPath: '/assets/' }).appPath, '/assets')
  t.equal(load({ appPath: '/uploader' }).appPath, '/uploader', 'a longer name is fine')
  for (const path of ['/upload', '/uploads', '/uploads/app']) {
    t.throws(() => load({ appPath: path }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /--app-path.*uploads are taken there/ }, path)
  }
})

t.test('--upload-expiry: 24h by default, 1s to 30 days', async (t) => {
  t.equal(load({}).uploadExpiry, 24 * 3_600_000)
  t.equal(load({ uploadExpiry: '1s' }).uploadExpiry, 1000)
  t.equal(load({ uploadExpiry: '720h' }).uploadExpiry, 30 * 24 * 3_600_000)
  for (const bad of ['500ms', '721h', 'soon']) t.throws(() => load({ uploadExpiry: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID' }, bad)
})

t.test('--files-host: none by default; a host name, lower-cased, without port, scheme or IP address', async (t) => {
  t.equal(load({}).filesHost, null)
  t.equal(load({ filesHost: 'Files.Example.com.' }).filesHost, 'files.example.com')
  t.equal(load({ filesHost: 'files.localhost' }).filesHost, 'files.localhost')
  for (const bad of ['files.example.com:8081', 'http://files.example.com', '127.0.0.1', '-files.example.com', 'a..b', '', 'files example']) {
    t.throws(() => load({ filesHost: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /--files-host/ }, bad)
  }
})
