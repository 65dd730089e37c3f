import t from 'tap'
import { loadConfig } from '../../../lib/core/config.js'

const env = (extra: Record<string, string> = {}) => ({ ESPRA_SECRET: 'x'.repeat(32), ...extra })

t.test('inbound mail limits: defaults, units, and refusals naming the option', async (t) => {
  const c = loadConfig({ flags: { role: 'mail' }, env: env() })
  t.equal(c.mailMaxLineLength, 998, 'RFC 5322 by default')
  t.equal(c.mailMaxHeaderSize, 64 * 1024)
  t.match(loadConfig({ flags: { role: 'mail', mailMaxLineLength: '4096', mailMaxHeaderSize: '256KB' }, env: env() }), { mailMaxLineLength: 4096, mailMaxHeaderSize: 256 * 1024 })
  const cases: [Record<string, unknown>, Record<string, string>, RegExp][] = [
    [{ mailMaxLineLength: '500' }, {}, /^--mail-max-line-length: must be an integer from 998 to 1048576/],
    [{ mailMaxLineLength: 'long' }, {}, /^--mail-max-line-length: must be an integer/],
    [{}, { ESPRA_MAIL_MAX_HEADER_SIZE: '2MB' }, /^ESPRA_MAIL_MAX_HEADER_SIZE: must be a size from 1KB to 1MB/],
    [{ mailMaxHeaderSize: '100' }, {}, /^--mail-max-header-size: must be a size from 1KB to 1MB/],
  ]
  for (const [flags, extra, message] of cases) {
    t.throws(() => loadConfig({ flags: { role: 'mail', ...flags }, env: env(extra) }), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, String(message))
  }
})
