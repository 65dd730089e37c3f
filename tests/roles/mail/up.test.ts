// `espra-node up` runs the mail role for real: it prints the SMTP address, takes mail for anyone@localhost,
// and the sample app's handleMail shows the message on its page.
import nodemailer from 'nodemailer'
import t from 'tap'
import { get } from '../../helpers/cluster.js'
import { startUp, waitFor } from '../../helpers/up.js'

t.test('mail to anyone@localhost reaches the sample app under up', async (t) => {
  const cluster = await startUp(t)
  const smtpPort = cluster.base + 16
  await waitFor('up prints the SMTP address', () => cluster.output().includes(`smtp://127.0.0.1:${smtpPort}`))
  t.pass('up prints the SMTP address')
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  const info = await transport.sendMail({ from: 'someone@example.test', to: 'anyone@localhost', subject: 'hello from the up test', text: 'it works' })
  t.match(info.response, /^250 /)
  const refused = await transport.sendMail({ from: 'someone@example.test', to: 'anyone@example.com', subject: 'x', text: 'x' }).then(() => null, (e: { responseCode?: number }) => e)
  t.equal(refused?.responseCode, 550, 'only localhost is a mail domain')
  const page = await waitFor('the page shows the message', async () => {
    const answer = await get(cluster.port('app'), '/')
    return answer.body.includes('hello from the up test') ? answer.body : undefined
  }, 30_000)
  t.match(page, /it works/)
})
