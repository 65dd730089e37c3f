// The alert options: defaults, lists of webhook URLs and addresses, the webhook key file read at load, and
// bad values refused naming the option.
import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../../lib/core/config.js'
import { testDir } from '../../helpers/temp-dir.js'

const load = (flags: Record<string, unknown>, role = 'admin') => loadConfig({ flags: { role, ...flags }, env: { ESPRA_SECRET: 'test-cluster-secret-0123456789' } })

t.test('defaults', async (t) => {
  t.match(load({}), {
    alerts: true, probeInterval: 10_000, probeTimeout: 2000, probeHistory: 30, alertDownAfter: 3, alertGroupWindow: 10_000, alertFlapHalfLife: 120_000,
    alertMaxRss: 3 * 1024 ** 3, alertMaxLag: 500, alertDeadLetters: 1, alertTaskBacklog: 10_000, alertPendingUploads: 100, alertBuildDeadline: 600_000,
    alertWebhook: [], alertWebhookSecretFile: null, alertWebhookFormat: 'json', alertEmail: [], alertEmailFrom: 'espra-alerts@localhost',
  })
})

t.test('lists and the key file', async (t) => {
  const c = load({ alertWebhook: 'https://hooks.example.com/a?x=1, http://127.0.0.1:9/b', alertEmail: 'ops@example.com,oncall@example.org' })
  t.same(c.alertWebhook, ['https://hooks.example.com/a?x=1', 'http://127.0.0.1:9/b'])
  t.same(c.alertEmail, ['ops@example.com', 'oncall@example.org'])
  const dir = testDir('espra-alert-key-')
  writeFileSync(join(dir, 'key'), 'webhook-key-0123456789\n')
  chmodSync(join(dir, 'key'), 0o600)
  t.equal(load({ alertWebhookSecretFile: join(dir, 'key') }).alertWebhookSecretFile, join(dir, 'key'))
  writeFileSync(join(dir, 'short'), 'short')
  t.throws(() => load({ alertWebhookSecretFile: join(dir, 'short') }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /^--alert-webhook-secret-file: the key in .* must be at least 16 characters$/ })
  t.throws(() => load({ alertWebhookSecretFile: join(dir, 'missing') }), { code: 'ESPRA_ERR_CONFIG_INVALID', message: /^--alert-webhook-secret-file: cannot read .* \(ENOENT\)$/ })
  t.doesNotThrow(() => load({ alertWebhookSecretFile: join(dir, 'missing') }, 'live'), 'other roles do not read it')
})

t.test('bad values name the option', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ probeInterval: '5ms' }, /^--probe-interval: must be a duration from 100ms/],
    [{ probeInterval: '1s', probeTimeout: '2s' }, /^--probe-timeout: must be at most --probe-interval \(1000ms\) \(got 2000ms\)$/],
    [{ alertDownAfter: '0' }, /^--alert-down-after: must be an integer from 1 to 100/],
    [{ alertWebhook: 'ftp://x/y' }, /^--alert-webhook: must be a comma-separated list of http:\/\/ or https:\/\/ URLs \("ftp:\/\/x\/y" is not one\)/],
    [{ alertWebhookFormat: 'teams' }, /^--alert-webhook-format: must be one of json, slack/],
    [{ alertEmail: 'ops' }, /^--alert-email: must be a comma-separated list of email addresses/],
    [{ alertEmailFrom: 'a@b.c,d@e.f' }, /^--alert-email-from: must be one email address/],
    [{ alerts: 'maybe' }, /^--alerts: must be true or false/],
  ]
  for (const [flags, message] of cases) t.throws(() => load(flags), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, JSON.stringify(flags))
})
