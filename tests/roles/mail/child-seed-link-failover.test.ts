// A mail child's own seed link (roles/mail/child-seed-link.ts) across a leader failover: two seeds on one real
// PostgreSQL, a mail node with 2 children given both, the leader killed with SIGKILL. The children's links move to
// the seed that takes the lead, the next message is recorded over one of them, and every message that got 250, before
// and after, is in the records the survivor reads.
import nodemailer from 'nodemailer'
import t from 'tap'
import { admin, killHard } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, startSeedPair, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { startPostgres } from '../../helpers/postgres.js'
import { scrape } from '../../helpers/prom-text.js'
import { testDir } from '../../helpers/temp-dir.js'

const postgres = await startPostgres(t)

const sum = async (node: StartedNode, name: string, labels: Record<string, string> = {}): Promise<number> =>
  (await scrape(node.metricsPort)).find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('the children\'s links follow the leader when it dies', async (t) => {
  const url = await postgres.createDatabase()
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0' }
  const { seeds, addresses } = await startSeedPair(t, { ...fast, datastore: url, 'seed-lease': '2000ms', 'blob-dir': testDir('espra-child-failover-') }, ['seed-a', 'seed-b'])
  const smtpPort = await freePort()
  const mail = await startNode(t, 'mail', { ...fast, seed: addresses.join(','), 'node-id': 'mail-1', children: 2, 'smtp-port': smtpPort, 'mail-domains': 'example.test', 'mail-auth': 'false' })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true, 30_000)
  await waitFor('both children linked', async () => (await sum(mail, 'espra_mail_seed_link_up')) === 2, 30_000)

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true, pool: false })
  const send = async (tag: string): Promise<string> => {
    const sent = await transport.sendMail({
      envelope: { from: 'ann@sender.test', to: ['bob@example.test'] },
      raw: `From: ann@sender.test\r\nTo: bob@example.test\r\nSubject: ${tag}\r\nMessage-ID: <child-failover-${tag}@sender.test>\r\n\r\nbody ${tag}\r\n`,
    })
    return /queued as (m[0-9a-z]+)/.exec(sent.response)![1]!
  }
  const ids = await Promise.all(Array.from({ length: 4 }, (_, i) => send(`n${i}`)))
  t.ok(await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' }) >= 1, 'recorded over the children\'s links')

  // seed-a led (startSeedPair starts it first and waits until it leads).
  await killHard(seeds[0])
  await seeds[1].waitForLog((l) => l.msg === 'seed leads the cluster', 'seed-b takes the lead', 30_000)
  await waitFor('both children linked again', async () => (await sum(mail, 'espra_mail_seed_link_up')) === 2, 30_000)
  const viaLink = await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' })
  // The message may meet a link that has not moved yet: the client is answered 451 and sends it again, as SMTP clients do.
  const after = await waitFor('a message after the failover is taken', () => send('after').catch(() => undefined), 30_000)
  ids.push(after)
  t.ok(await sum(mail, 'espra_mail_seed_requests_total', { via: 'link' }) > viaLink, 'over a child\'s link to the new leader')

  const listed = await admin(['mail', 'inbound', '--json', '--seed', addresses[1]])
  t.equal(listed.code, 0, listed.stderr)
  const recorded = (JSON.parse(listed.stdout) as { messages: { id: string }[] }).messages.map((m) => m.id)
  t.same([...new Set(recorded)].sort(), [...new Set(ids)].sort(), 'every message that got 250 is recorded')
})
