import t from 'tap'
import { loadConfig } from '../../../lib/core/config.js'

const env = (extra: Record<string, string> = {}) => ({ ESPRA_SECRET: 'x'.repeat(32), ...extra })

t.test('inbound mail limits: defaults, units, and refusals naming the option', async (t) => {
  const c = loadConfig({ flags: { role: 'mail' }, env: env() })
  t.equal(c.mailMaxLineLength, 998, 'RFC 5322 by default')
  t.equal(c.mailMaxHeaderSize, 64 * 1024)
  t.match(c, { mailAuth: true, mailAuthTimeout: 5000, mailDmarcReject: false, mailDnsServers: [], mailRecipientTimeout: 2000, mailRecipientFail: 'open' }, 'verified, not enforced, the system resolver; recipients fail open after 2s')
  t.same(loadConfig({ flags: { role: 'mail', mailDnsServers: '127.0.0.1, 10.0.0.2:5353,[::1]:53' }, env: env() }).mailDnsServers, ['127.0.0.1', '10.0.0.2:5353', '[::1]:53'])
  t.match(loadConfig({ flags: { role: 'mail', mailMaxLineLength: '4096', mailMaxHeaderSize: '256KB' }, env: env() }), { mailMaxLineLength: 4096, mailMaxHeaderSize: 256 * 1024 })
  const cases: [Record<string, unknown>, Record<string, string>, RegExp][] = [
    [{ mailMaxLineLength: '500' }, {}, /^--mail-max-line-length: must be an integer from 998 to 1048576/],
    [{ mailMaxLineLength: 'long' }, {}, /^--mail-max-line-length: must be an integer/],
    [{}, { ESPRA_MAIL_MAX_HEADER_SIZE: '2MB' }, /^ESPRA_MAIL_MAX_HEADER_SIZE: must be a size from 1KB to 1MB/],
    [{ mailMaxHeaderSize: '100' }, {}, /^--mail-max-header-size: must be a size from 1KB to 1MB/],
    [{ mailAuthTimeout: '10m' }, {}, /^--mail-auth-timeout: must be a duration from 100ms to 60000ms/],
    [{ mailDnsServers: '127.0.0.1:53,resolver.example' }, {}, /^--mail-dns-servers: must be a comma-separated list of DNS server addresses, ip or ip:port \("resolver.example" is not one\)/],
    [{ mailDnsServers: '10.0.0.1:99999' }, {}, /^--mail-dns-servers: must be a comma-separated list/],
    [{ mailDmarcReject: 'true', mailAuth: 'false' }, {}, /^--mail-dmarc-reject: needs --mail-auth/],
    [{ mailRecipientTimeout: '50ms' }, {}, /^--mail-recipient-timeout: must be a duration from 100ms to 30000ms/],
    [{}, { ESPRA_MAIL_RECIPIENT_FAIL: 'maybe' }, /^ESPRA_MAIL_RECIPIENT_FAIL: must be one of open, closed/],
  ]
  for (const [flags, extra, message] of cases) {
    t.throws(() => loadConfig({ flags: { role: 'mail', ...flags }, env: env(extra) }), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, String(message))
  }
})
