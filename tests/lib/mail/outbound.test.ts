// Checking and composing outbound messages, and the RFC 3464 notices, without any process.
import t from 'tap'
import { checkOutMessage, composeOutMessage, recipientsByDomain } from '../../../lib/mail/outbound.js'
import { buildDsn, statusOf } from '../../../lib/mail/dsn.js'

t.test('addresses are normalised and grouped by domain once each', async (t) => {
  const m = checkOutMessage({ from: 'Shop@Example.COM', to: 'a@Dest.test, b@dest.test', cc: [{ name: 'C', address: 'c@other.test' }], bcc: 'A@DEST.test' })
  t.equal(m.from.address, 'Shop@example.com')
  t.same([...recipientsByDomain(m)], [['dest.test', ['a@dest.test', 'b@dest.test']], ['other.test', ['c@other.test']]])
})

t.test('every header field refuses CR, LF and NUL', async (t) => {
  const base = { from: 'a@x.test', to: 'b@y.test' }
  for (const [field, message] of [
    ['subject', { ...base, subject: 'a\rb' }], ['subject', { ...base, subject: 'a\0b' }], ['replyTo', { ...base, replyTo: 'c@z.test\n' }],
    ['cc', { ...base, cc: 'c@z.test\r\nBcc: d@z.test' }], ['to[0].name', { ...base, to: [{ name: 'x\ny', address: 'b@y.test' }] }],
    ['attachments[0].contentType', { ...base, attachments: [{ filename: 'f', contentType: 'text/plain\r\nX: y', content: 'x' }] }],
  ] as const) {
    t.throws(() => checkOutMessage(message), { code: 'ESPRA_ERR_MAIL_HEADER_INJECTION', details: { field } }, field)
  }
})

t.test('composed: Message-ID from the id and sender domain, no Bcc header, custom headers kept', async (t) => {
  const m = checkOutMessage({ from: 'a@x.test', to: 'b@y.test', bcc: 'hidden@y.test', subject: 'Grüße', text: 'hi', headers: { 'List-Unsubscribe': '<mailto:u@x.test>' } })
  const { raw, messageId } = await composeOutMessage(m, 'oabc123def456789abc', async () => null)
  t.equal(messageId, 'oabc123def456789abc@x.test')
  const text = raw.toString()
  t.match(text, /^Message-ID: <oabc123def456789abc@x\.test>\r$/m)
  t.match(text, /^List-Unsubscribe: <mailto:u@x\.test>\r$/m)
  t.match(text, /^Subject: =\?UTF-8\?/m, 'non-ASCII subject encoded')
  t.notMatch(text, /hidden/)
  await t.rejects(composeOutMessage(checkOutMessage({ ...{ from: 'a@x.test', to: 'b@y.test' }, attachments: [{ filename: 'f', key: `files/${'a'.repeat(64)}` }] }), 'o1', async () => null),
    { code: 'ESPRA_ERR_MAIL_INVALID', details: { field: 'attachments[0].key' } })
})

t.test('DSN: multipart/report with one group per recipient and the status from the answer', async (t) => {
  t.equal(statusOf('550 5.1.1 no such user', 'failed'), '5.1.1')
  t.equal(statusOf('554 go away', 'failed'), '5.0.0')
  t.equal(statusOf('ETIMEDOUT: Greeting never received', 'delayed'), '4.4.1')
  const { raw } = buildDsn({
    action: 'failed', reportingMta: 'mx.x.test', to: 'a@x.test', originalMessageId: 'o1@x.test', originalSubject: 'hi\r\nInjected: no',
    originalHeaders: 'Subject: hi\r\nMessage-ID: <o1@x.test>', arrivalDate: 0, recipients: [{ address: 'b@y.test', diagnostic: '550 5.1.1 no\r\nsuch', remote: 'mx.y.test' }],
  })
  const text = raw.toString()
  t.match(text, /Content-Type: multipart\/report; report-type=delivery-status; boundary="=_espra_[0-9a-f]+"/)
  t.match(text, /Reporting-MTA: dns; mx\.x\.test\r\nArrival-Date: /)
  t.match(text, /Final-Recipient: rfc822; b@y\.test\r\nAction: failed\r\nStatus: 5\.1\.1\r\nRemote-MTA: dns; mx\.y\.test\r\nDiagnostic-Code: smtp; 550 5\.1\.1 no such\r\n/)
  t.notMatch(text, /^Injected:/m, 'text from the original is kept on one line')
})
