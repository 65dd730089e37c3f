// Each mail child sends its inbound `record` ops to the seed over its own meta link (roles/mail/child-seed-link.ts),
// not through its parent: the seed counts one node connection per child on top of the parent's, the children count
// their requests as sent over their link, and a message is answered 250 while the parent is stopped with SIGSTOP
// (the limit checks fail open after 1 s; the record cannot have gone through the parent). Then the seed is killed
// with SIGKILL and started again on its data: the children's links come back and the next message is recorded over
// them; every message that got 250 is in the seed's records.
import nodemailer from 'nodemailer'
import t from 'tap'
import { admin, killHard } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { scrape } from '../../helpers/prom-text.js'
import { testDir } from '../../helpers/temp-dir.js'

const sum = async (node: StartedNode, name: string, labels: Record<string, string> = {}): Promise<number> =>
  (await scrape(node.metricsPort)).find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('a mail child records over its own seed link, also after a seed restart', async (t) => {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0' }
  const seedFlags = { ...fast, 'meta-port': metaPort, 'data-dir': testDir('espra-child-link-') }
  let seed = await startNode(t, 'seed', seedFlags)
  const nodeLinks = () => sum(seed, 'espra_seed_meta_connections', { kind: 'node' })
  const before = await waitFor('the seed counts its own link', async () => ((await nodeLinks()) >= 1 ? nodeLinks() : undefined))

  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', { ...fast, seed: seedAddress, 'node-id': 'mail-1', children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'mail-auth': 'false' })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  await waitFor('both children linked', async () => (await sum(mail, 'espra_mail_seed_link_up')) === 2)
  t.equal(await nodeLinks(), before + 3, 'the seed holds the parent\'s link and one per child')

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, pool: false })
  const send = async (tag: string): Promise<string> => {
    const sent = await transport.sendMail({
      envelope: { from: 'ann@sender.test', to: ['bob@example.test'] },
      raw: `From: ann@sender.test\r\nTo: bob@example.test\r\nSubject: ${tag}\r\nMessage-ID: <child-link-${tag}@sender.test>\r\n\r\nbody ${tag}\r\n`,
    })
    return /queued as (m[0-9a-z]+)/.exec(sent.response)![1]!
  }
  const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => send(`n${i}`)))
  t.ok(await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' }) >= 1, 'the children sent their groups over their own links')
  t.equal(await sum(mail, 'espra_mail_seed_requests_total', { via: 'parent' }), 0, 'nothing went through the parent')

  // The parent stopped: no relay can answer, yet the message is recorded and answered 250.
  process.kill(mail.proc.pid!, 'SIGSTOP')
  try {
    ids.push(await send('parent-stopped'))
  } finally {
    process.kill(mail.proc.pid!, 'SIGCONT')
  }

  await killHard(seed)
  seed = await startNode(t, 'seed', seedFlags)
  await waitFor('both children linked again', async () => (await sum(mail, 'espra_mail_seed_link_up')) === 2, 30_000)
  const viaLink = await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' })
  ids.push(await send('after-restart'))
  t.ok(await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' }) > viaLink, 'the message after the restart went over a child\'s link')

  const listed = await admin(['mail', 'inbound', '--json', '--seed', seedAddress])
  t.equal(listed.code, 0, listed.stderr)
  const recorded = (JSON.parse(listed.stdout) as { messages: { id: string }[] }).messages.map((m) => m.id)
  t.same([...recorded].sort(), [...ids].sort(), 'every message that got 250 is recorded, once')
})
