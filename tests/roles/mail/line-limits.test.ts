// Header and line length limits in DATA, over raw SMTP (nodemailer would fold the lines this sends): a line over
// --mail-max-line-length (998: RFC 5322 2.1.1) answers 554 5.6.0, a header section over --mail-max-header-size
// 552 5.3.4, both at the end of DATA with nothing stored, and the connection goes on with the next transaction.
import t from 'tap'
import { startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { openSmtp, type SmtpSession } from '../../helpers/smtp-session.js'
import { storedRaw } from './stored-raw.js'

const head = (subject: string) => `From: a@sender.test\r\nTo: r@example.test\r\nSubject: ${subject}\r\n\r\n`

/** One transaction; `body` is the data before the terminating `.` (written in pieces when it is a list). */
async function send(s: SmtpSession, body: string | string[]): Promise<string> {
  const mail = await s.command('MAIL FROM:<a@sender.test>')
  const rcpt = await s.command('RCPT TO:<r@example.test>')
  const data = await s.command('DATA')
  if (!/^250 /.test(mail) || !/^250 /.test(rcpt) || !/^354 /.test(data)) return `not in DATA: ${mail} / ${rcpt} / ${data}`
  for (const piece of Array.isArray(body) ? body : [body]) await s.write(Buffer.from(piece, 'latin1'))
  return s.data('\r\n.\r\n')
}

t.test('line and header limits', async (t) => {
  const cluster = await startAppCluster(t)
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': smtpPort, 'mail-domains': 'example.test',
    'heartbeat-interval': '100ms', 'blob-dir': cluster.blobDir, 'mail-max-header-size': '8KB',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const s = await openSmtp(smtpPort)
  t.match(await s.command('EHLO c.test'), /^250 /)
  const taken: string[] = []
  const ok = (reply: string) => {
    const id = /queued as (m[0-9a-z]+)$/.exec(reply)?.[1]
    if (id) taken.push(id)
    return reply
  }

  t.match(ok(await send(s, head('exactly 998') + 'a'.repeat(998) + '\r\n' + 'b'.repeat(998))), /^250 2\.0\.0 /, 'lines of 998 octets are taken')
  t.match(ok(await send(s, head('bare LF').replace(/\r\n/g, '\n') + 'a'.repeat(998) + '\nend')), /^250 /, '998 octets ended by a bare LF are taken')
  // Dot-stuffed on the wire: 999 octets sent, 998 in the message.
  t.match(ok(await send(s, head('stuffed') + '.' + '.'.repeat(998))), /^250 /, 'a dot-stuffed line is measured unstuffed')
  // The line limit holds across pieces however the bytes are cut, CR and LF in different writes included.
  t.match(ok(await send(s, [head('split'), 'a'.repeat(500), 'a'.repeat(498), '\r', '\nnext'])), /^250 /, '998 octets written in pieces, CR and LF apart')

  t.match(await send(s, head('999') + 'short\r\n' + 'a'.repeat(999) + '\r\nafter'), /^554 5\.6\.0 Line 6 of the message is longer than 998 octets/, 'a line of 999 octets: 554 5.6.0 naming the line')
  t.match(await send(s, [head('split 999'), 'a'.repeat(500), 'a'.repeat(499), '\r', '\n']), /^554 5\.6\.0 /, '999 octets in pieces')
  t.match(await send(s, head('last line') + 'a'.repeat(999)), /^554 5\.6\.0 /, 'the last line counts too')
  t.match(await send(s, `Subject: ${'s'.repeat(1000)}\r\n\r\nbody`), /^554 5\.6\.0 Line 1 /, 'a header line too')
  // 4 MB in one line, in 64 KB writes: read to its end and dropped, and the connection is still in step.
  t.match(await send(s, [head('endless'), ...Array<string>(64).fill('x'.repeat(64 * 1024))]), /^554 5\.6\.0 Line 5 /, 'a 4 MB line')

  const headers = Array.from({ length: 12 }, (_, i) => `X-Pad-${i}: ${'h'.repeat(700)}\r\n`).join('')
  t.match(await send(s, head('big header').replace('\r\n\r\n', `\r\n${headers}\r\n`) + 'body'), /^552 5\.3\.4 Header section too big: the limit is 8192 octets/, 'a header section over --mail-max-header-size: 552 5.3.4')
  t.match(await send(s, 'X-No-Body: 1\r\n'.repeat(700)), /^552 5\.3\.4 Header/, 'a message that is all header counts as one')
  t.match(ok(await send(s, head('small header').replace('\r\n\r\n', `\r\n${headers.slice(0, 7 * 712)}\r\n`) + 'y'.repeat(900) + '\r\n'.repeat(20_000))), /^250 /, 'a header section under the limit with a big body is taken')

  t.match(await s.command('NOOP'), /^250 /, 'the connection goes on after every refusal')
  t.notOk(s.closed)
  s.close()
  t.equal(taken.length, 5)

  const stored = await storedRaw(cluster)
  t.same(stored.all, [...taken].sort(), 'only the accepted messages are stored: nothing of a refused one (blob store or datastore)')
  t.equal(stored.datastore.length, taken.length, 'each of them (at most 48 KB) in the datastore, no file')
  t.ok(mail.logs.some((l) => l['refused'] === 'line' && /over --mail-max-line-length/.test(l.msg)), 'the log says which limit')
  t.ok(mail.logs.some((l) => l['refused'] === 'header' && /over --mail-max-header-size/.test(l.msg)))
  t.equal(mail.childPids().length, 1, 'no child crashed')
})
