// admin mail show|queue|retry|drop|hold|release and suppression ls|add|rm against a real cluster: a seed, a mail node
// delivering through --smtp-relay to a real smtp-server that answers 451 to some recipients until told otherwise.
import t from 'tap'
import { admin, startAppCluster } from '../../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor } from '../../helpers/cluster.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'
import { SECRET } from '../../helpers/cluster.js'

t.test('admin mail: follow and steer outbound messages', async (t) => {
  const cluster = await startAppCluster(t)
  let busy = true
  const receiver = await startReceiver({ rcpt: (address) => (busy && address.startsWith('wait') ? [451, '4.2.1 mailbox busy'] : null) })
  t.teardown(() => receiver.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'smtp-relay': `smtp://127.0.0.1:${receiver.port}`,
    'mail-retry-base': '300ms', 'mail-retry-max': '600ms',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const run = (args: string[]) => admin(['mail', ...args, '--seed', cluster.seedAddress])
  const sendTo = async (to: string) => {
    const r = await run(['send', '--from', 'shop@espra.test', '--to', to, '--subject', `to ${to}`, '--text', 'x'])
    if (r.code !== 0) throw new Error(r.stderr)
    return r.stdout.trim().split('\n').pop()!
  }
  // Polled by reading the record (a CLI process per poll is slow on a shared machine); `show --json` is checked once below.
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const status = async (id: string) => (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord

  t.test('queue and show; hold, retry refused while held, release delivers', async (t) => {
    const id = await sendTo('wait@dest.test')
    await waitFor('deferred twice', async () => (await status(id)).events.filter((e) => e.type === 'deferred').length >= 2, 15_000)
    const q = await run(['queue', '--deferred'])
    t.equal(q.code, 0, q.stderr)
    t.match(q.stdout, new RegExp(`^${id}\\s+deferred\\s+\\S+\\s+shop@espra\\.test\\s+1\\s+\\S+\\s+451 4\\.2\\.1 mailbox busy`, 'm'))
    const shown = await run(['show', id])
    t.equal(shown.code, 0)
    t.match(shown.stdout, new RegExp(`^message   ${id} \\(deferred\\)`, 'm'))
    t.match(shown.stdout, /^\S+Z\s+queued\s+-\s+wait@dest\.test/m)
    t.match(shown.stdout, /deferred\s+dest\.test\s+wait@dest\.test\s+451 4\.2\.1 mailbox busy \(next attempt \S+Z\)/)

    const held = await run(['hold', id])
    t.equal(held.stdout, `${id} held\n`)
    t.match((await run(['queue', '--held'])).stdout, new RegExp(`^${id}\\s+held`, 'm'))
    const refused = await run(['retry', id])
    t.equal(refused.code, 1)
    t.match(refused.stderr, /^espra-node: ESPRA_ERR_MAIL_STATE: outbound message \S+: it is held: release it/)
    busy = false
    const offers = receiver.offered.get('wait@dest.test')
    await new Promise((r) => setTimeout(r, 1500))
    t.equal(receiver.offered.get('wait@dest.test'), offers, 'nothing is tried while held')
    t.equal((await run(['release', id])).stdout, `${id} queued\n`)
    await waitFor('delivered after release', () => receiver.received.find((m) => m.to.includes('wait@dest.test')), 15_000)
    const after = JSON.parse((await run(['show', id, '--json'])).stdout) as OutRecord
    t.same(after.events.map((e) => e.type).filter((e) => e !== 'deferred'), ['queued', 'held', 'released', 'delivered'])
    const again = await run(['release', id])
    t.equal(again.code, 1)
    t.match(again.stderr, /ESPRA_ERR_MAIL_STATE: .*nothing is pending \(it is delivered\)/)
  })

  t.test('drop stops delivery for good; retry skips the wait', async (t) => {
    busy = true
    const dropped = await sendTo('wait2@dest.test')
    await waitFor('deferred', async () => (await status(dropped)).events.some((e) => e.type === 'deferred'), 15_000)
    t.equal((await run(['drop', dropped])).stdout, `${dropped} dropped\n`)
    const retried = await sendTo('wait3@dest.test')
    await waitFor('deferred', async () => (await status(retried)).events.some((e) => e.type === 'deferred'), 15_000)
    t.equal((await run(['retry', retried])).stdout, `${retried} queued\n`)
    await waitFor('an attempt after the retry', async () => (await status(retried)).events.map((e) => e.type).join(',').match(/retried,deferred/), 15_000)
    busy = false
    await waitFor('retried one delivered', () => receiver.received.find((m) => m.to.includes('wait3@dest.test')), 15_000)
    await new Promise((r) => setTimeout(r, 1500))
    t.notOk(receiver.received.some((m) => m.to.includes('wait2@dest.test')), 'the dropped one never went')
    t.ok((await status(dropped)).dropped)
    t.notOk(receiver.received.some((m) => m.from === ''), 'no bounce for a dropped message')
  })

  t.test('suppression ls|add|rm', async (t) => {
    t.equal((await run(['suppression', 'ls'])).stdout, '(no suppressed addresses)\n')
    const added = await run(['suppression', 'add', 'Blocked@Dest.test', '--reason', 'asked us to stop'])
    t.equal(added.code, 0, added.stderr)
    t.match(added.stdout, /^blocked@dest\.test suppressed until \S+Z\n$/)
    t.match((await run(['suppression', 'ls'])).stdout, /^blocked@dest\.test\s+\S+\s+\S+\s+admin\s+asked us to stop$/m)
    const id = await sendTo('blocked@dest.test')
    await waitFor('suppressed', async () => (await status(id)).events.some((e) => e.type === 'suppressed'), 15_000)
    t.equal((await run(['suppression', 'rm', 'blocked@dest.test'])).stdout, 'blocked@dest.test no longer suppressed\n')
    const id2 = await sendTo('blocked@dest.test')
    await waitFor('delivered once unsuppressed', async () => (await status(id2)).events.some((e) => e.type === 'delivered'), 15_000)
    const rm = await run(['suppression', 'rm', 'nobody@dest.test'])
    t.equal(rm.code, 1)
    t.match(rm.stderr, /ESPRA_ERR_MAIL_NOT_FOUND: no suppression of nobody@dest\.test/)
    const bad = await run(['suppression', 'add', 'not an address'])
    t.not(bad.code, 0)
    t.match(bad.stderr, /<address>: must be an address/)
  })

  t.test('a drained mail node takes no new deliveries until undrained', async (t) => {
    busy = false
    const drained = await admin(['drain', 'mail-1', '--then', 'idle', '--grace', '0', '--no-wait', '--seed', cluster.seedAddress])
    t.equal(drained.code, 0, drained.stderr)
    await mail.waitForLog((l) => l.msg === 'outbound mail: node drained, taking no new deliveries', 'paused')
    const id = await sendTo('later@dest.test')
    await new Promise((r) => setTimeout(r, 1500))
    t.notOk(receiver.received.some((m) => m.to.includes('later@dest.test')), 'nothing delivered while drained')
    t.equal((await status(id)).events.length, 1, 'still only queued')
    const undrained = await admin(['undrain', 'mail-1', '--no-wait', '--seed', cluster.seedAddress])
    t.equal(undrained.code, 0, undrained.stderr)
    await waitFor('delivered once undrained', () => receiver.received.find((m) => m.to.includes('later@dest.test')), 15_000)
  })

  t.test('unknown and malformed ids', async (t) => {
    const unknown = await run(['show', 'omx0000000123456789abc'])
    t.equal(unknown.code, 1)
    t.match(unknown.stderr, /^espra-node: ESPRA_ERR_MAIL_NOT_FOUND: no outbound message omx0000000123456789abc/)
    const bad = await run(['retry', '../etc'])
    t.not(bad.code, 0)
    t.match(bad.stderr, /<id>: must be an outbound message id/)
  })
})
