// Mail metrics from a real SMTP dialogue: refusals counted by reason and code.
import t from 'tap'
import { freePort, startNode } from '../../helpers/cluster.js'
import { scrape, type PromText } from '../../helpers/prom-text.js'
import { openSmtp } from '../../helpers/smtp-session.js'

const refusals = (p: PromText, reason: string) => p.find('espra_mail_inbound_refusals_total', { reason }).reduce((n, s) => n + s.value, 0)

t.test('SMTP refusals by reason and code', async (t) => {
  const smtpPort = await freePort()
  const node = await startNode(t, 'mail', { children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test' })
  const before = await scrape(node.metricsPort)
  t.equal(before.value('espra_mail_inbound_refusals_total', { child: '0', reason: 'unknown_domain', code: '550' }), 0)
  t.equal(before.value('espra_mail_inbound_messages_total', { child: '0', result: 'accepted' }), 0)

  const s = await openSmtp(smtpPort)
  t.match(await s.command('EHLO client.test'), /^250 /)
  t.match(await s.command('MAIL FROM:<a@client.test>'), /^250 /)
  t.match(await s.command('RCPT TO:<b@elsewhere.test>'), /^550 /)
  t.match(await s.command('RCPT TO:<c@elsewhere.test>'), /^550 /)
  t.match(await s.command('RCPT TO:<not an address@>'), /^5\d\d /)
  s.close()

  const after = await scrape(node.metricsPort)
  t.equal(refusals(after, 'unknown_domain') - refusals(before, 'unknown_domain'), 2, 'two recipients of a domain not served')
  t.equal(refusals(after, 'unknown_recipient') - refusals(before, 'unknown_recipient'), 0)
  t.equal(after.find('espra_mail_inbound_refusals_total', { reason: 'too_large', code: '552' }).length, 1, 'every reason listed with its code')
  t.end()
})
