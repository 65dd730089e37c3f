// `espra-node up` runs outbound mail for real without anything leaving the machine: the mail node relays into the
// cluster's own SMTP port. The sample app's POST /api/mail sends a note with ctx.sendMail; a note to anyone@localhost
// comes back through handleMail, one to another domain is refused there and bounces to the sample app; every step
// reaches handleMailEvent. Both show on the app's page.
import t from 'tap'
import { get } from '../../helpers/cluster.js'
import { send } from '../../helpers/http.js'
import { startUp, waitFor } from '../../helpers/up.js'

t.test('the sample app sends mail under up', async (t) => {
  const cluster = await startUp(t)
  await waitFor('up says outbound mail stays local', () => cluster.output().includes('outbound mail is relayed here too'))
  const appPort = cluster.port('app')
  const post = async (body: unknown) => {
    const r = await send({ host: '127.0.0.1', port: appPort, path: '/api/mail', method: 'POST', headers: { 'content-type': 'application/json' } }, JSON.stringify(body))
    return { status: r.status, body: JSON.parse(r.body) as { id?: string; error?: string; code?: string } }
  }
  const sent = await waitFor('the sample app is serving', async () => {
    const r = await post({ to: 'anyone@localhost', subject: 'a note to myself', text: 'round trip' })
    return r.status === 202 ? r : undefined
  }, 30_000)
  t.match(sent.body.id, /^o[0-9a-z]+$/)
  const bounced = await post({ to: 'nobody@elsewhere.test', subject: 'nowhere', text: 'x' })
  t.equal(bounced.status, 202)
  const bad = await post({ to: 'x@localhost', subject: 'a\r\nBcc: y@localhost' })
  t.equal(bad.status, 400)
  t.equal(bad.body.code, 'ESPRA_ERR_MAIL_HEADER_INJECTION')

  const page = await waitFor('the page shows the note received, the bounce and the events', async () => {
    const body = (await get(appPort, '/')).body
    return body.includes('a note to myself') && body.includes('Undelivered Mail Returned to Sender') && body.includes(`${bounced.body.id}</code> bounced`) ? body : undefined
  }, 60_000)
  t.match(page, new RegExp(`<code>${sent.body.id}</code> delivered anyone@localhost: 127\\.0\\.0\\.1: 250 `), 'delivered, with the answer')
  t.match(page, new RegExp(`<code>${bounced.body.id}</code> bounced nobody@elsewhere\\.test: 550 5\\.1\\.1`), 'bounced with the refusal')
})
