// The outbound mail options: --smtp-relay URLs checked at load and their password never printed; --dkim lists; defaults.
import t from 'tap'
import { loadConfig, printable } from '../../../lib/core/config.js'

const load = (flags: Record<string, unknown>) => loadConfig({ flags: { role: 'mail', ...flags }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789' } })

t.test('defaults', async (t) => {
  t.match(load({}), {
    smtpRelay: null, mailConcurrency: 50, mailConcurrencyPerDomain: 5, mailRetryBase: 60_000, mailRetryMax: 3_600_000,
    mailGiveUp: 48 * 3_600_000, mailDelayWarning: 4 * 3_600_000, mailSuppressionTtl: 720 * 3_600_000, mailMxPort: 25, mailLease: 60_000, mailEvents: true, dkim: [],
  })
})

t.test('--smtp-relay: smtp:// or smtps:// with a host; the password masked in config check', async (t) => {
  t.equal(load({ smtpRelay: 'smtp://relay.internal:587' }).smtpRelay, 'smtp://relay.internal:587')
  t.equal(load({ smtpRelay: 'smtps://u:p@relay.internal' }).smtpRelay, 'smtps://u:p@relay.internal')
  for (const bad of ['relay.internal:25', 'http://relay:25', 'smtp://', 'smtp://relay/path', 'smtp://relay?x=1', 'not a url']) {
    t.throws(() => load({ smtpRelay: bad }), { code: 'ESPRA_ERR_CONFIG_INVALID', details: { option: '--smtp-relay' } }, bad)
  }
  const shown = printable(load({ smtpRelay: 'smtp://mailer:s3cret@relay.internal:587' }))
  t.equal(shown['smtpRelay'], 'smtp://mailer:***@relay.internal:587')
  t.notMatch(JSON.stringify(shown), /s3cret/)
})

t.test('--dkim: domain:selector:keyfile, several comma-separated, one per domain', async (t) => {
  t.throws(() => load({ dkim: 'example.com' }), { message: /^--dkim: must be domain:selector:keyfile/ })
  t.throws(() => load({ dkim: 'example.com:bad selector:/k' }), { message: /a DKIM selector is letters/ })
  t.throws(() => load({ dkim: 'a.com:s:/x,A.com:t:/y' }), { message: /names a\.com twice/ })
  t.throws(() => load({ dkim: 'a.com:s:/nonexistent/key.pem' }), { message: /^--dkim: the key file of a\.com, \/nonexistent\/key\.pem, cannot be read \(ENOENT\)$/ })
  // Only the mail role reads the files.
  t.same(loadConfig({ flags: { role: 'app', dkim: 'a.com:s:/nonexistent/key.pem' }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789' } }).dkim, [{ domain: 'a.com', selector: 's', keyFile: '/nonexistent/key.pem' }])
})

t.test('--mail-dns: ip or ip:port, comma-separated', async (t) => {
  t.same(load({}).mailDns, [])
  t.same(load({ mailDns: '10.0.0.2, 127.0.0.1:5353,[::1]:53,::1' }).mailDns, ['10.0.0.2:53', '127.0.0.1:5353', '[::1]:53', '[::1]:53'])
  for (const bad of ['dns.example', '10.0.0.2:0', '10.0.0.999', '127.0.0.1:99999']) t.throws(() => load({ mailDns: bad }), { message: /^--mail-dns: must be DNS servers/ }, bad)
})

t.test('durations are bounded', async (t) => {
  t.throws(() => load({ mailRetryBase: '10ms' }), { message: /^--mail-retry-base: / })
  t.throws(() => load({ mailLease: '100ms' }), { message: /^--mail-lease: / })
  t.throws(() => load({ mailConcurrencyPerDomain: 0 }), { message: /^--mail-concurrency-per-domain: must be an integer from 1 to 100/ })
})
