// --init-timeout: a duration from 100ms to 1h, default 30s; anything else is refused naming the option.
import t from 'tap'
import { loadConfig } from '../../../lib/core/config.js'

const load = (flags: Record<string, unknown>, env: Record<string, string> = {}) =>
  loadConfig({ flags: { role: 'app', ...flags }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789', ...env } })

t.test('--init-timeout', async (t) => {
  t.equal(load({}).initTimeout, 30_000, 'default 30s')
  t.equal(load({ initTimeout: '2s' }).initTimeout, 2000)
  t.equal(load({}, { ESPRA_INIT_TIMEOUT: '1m' }).initTimeout, 60_000, 'from the environment')
  for (const bad of ['50ms', '2h', 'soon', '-1s', '', '1e9']) {
    t.throws(() => load({ initTimeout: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID', details: { option: '--init-timeout' } }, JSON.stringify(bad))
  }
})
