// Outbound failures through real processes: a mail node whose --smtp-relay is a TCP front the test switches between
// hanging (accepts, says nothing), answering garbage, and passing bytes to a real smtp-server. Timers are shortened.
import net from 'node:net'
import t from 'tap'
import { startAppCluster } from '../../helpers/app-cluster.js'
import { admin } from '../../helpers/app-cluster.js'
import { freePort, health, SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { startReceiver } from '../../helpers/smtp-receiver.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { createLogger } from '../../../lib/core/log.js'
import type { OutRecord } from '../../../lib/mail/outbound-store.js'

type Mode = 'hang' | 'garbage' | 'ok'

/** A relay front: what it does with each new connection depends on `mode` at that moment. */
async function startFront(receiverPort: number) {
  const state = { mode: 'hang' as Mode, connections: 0 }
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    state.connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    if (state.mode === 'hang') return
    if (state.mode === 'garbage') {
      socket.write('HELLO I AM NOT AN SMTP SERVER\r\n\x00\xff\xfe garbage\r\n')
      return
    }
    const upstream = net.connect(receiverPort, '127.0.0.1')
    upstream.on('error', () => socket.destroy())
    socket.pipe(upstream).pipe(socket)
    sockets.add(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    state,
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

t.test('a relay that hangs or answers garbage: deferred, delay notice, then delivered; giving up bounces', async (t) => {
  const cluster = await startAppCluster(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const front = await startFront(receiver.port)
  t.teardown(() => front.close())
  const mail = await startNode(t, 'mail', {
    seed: cluster.seedAddress, 'node-id': 'mail-1', children: 1, 'smtp-port': await freePort(), 'blob-dir': cluster.blobDir,
    'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'mail-hostname': 'mx.espra.test',
    'smtp-relay': `smtp://127.0.0.1:${front.port}`, 'mail-smtp-timeout': '400ms', 'mail-retry-base': '200ms', 'mail-retry-max': '500ms',
    'mail-delay-warning': '1s', 'mail-give-up': '6s',
  })
  await waitFor('mail registered', async () => (await health(mail.port)).body['seedConnected'] === true)
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  t.teardown(() => client.close())
  const ds = createDatastoreClient(client)
  const record = async (id: string): Promise<OutRecord> => {
    const r = (await ds.get('mailOutbound', `out/${id}`)) as unknown as OutRecord | null
    if (r === null) throw new Error(`no record out/${id}`)
    return r
  }
  const sendVia = async (to: string, subject: string) => {
    const r = await admin(['mail', 'send', '--seed', cluster.seedAddress, '--from', 'shop@espra.test', '--to', to, '--subject', subject, '--text', 'x'])
    if (r.code !== 0) throw new Error(r.stderr)
    return r.stdout.trim().split('\n').pop()!
  }
  const deferrals = async (id: string) => (await record(id)).events.filter((e) => e.type === 'deferred')

  t.test('hang, then garbage, then a working relay', async (t) => {
    front.state.mode = 'hang'
    const id = await sendVia('ann@dest.test', 'patience')
    const hung = await waitFor('deferred by a timeout', async () => (await deferrals(id))[0], 15_000)
    t.match(hung.detail, /timeout|ETIMEDOUT/i, `reason says it timed out: ${hung.detail}`)
    t.ok(hung.next! > hung.at)
    front.state.mode = 'garbage'
    const seen = (await deferrals(id)).length
    const garbled = await waitFor('deferred by garbage', async () => (await deferrals(id)).slice(seen).find((e) => !/timeout/i.test(e.detail ?? '')), 15_000)
    t.match(garbled.detail, /HELLO I AM NOT|greeting|EPROTOCOL|ECONNECTION/i, `reason names the bad answer: ${garbled.detail}`)
    const warned = await waitFor('delay notice recorded', async () => (await record(id)).events.find((e) => e.type === 'delay-warned'), 15_000)
    t.match(warned, { domain: 'dest.test', rcpts: ['ann@dest.test'] })
    t.equal((await health(mail.port)).status, 200, 'the node keeps running')
    front.state.mode = 'ok'
    await waitFor('delivered once the relay works', () => receiver.received.find((m) => m.to.includes('ann@dest.test')), 15_000)
    const notice = await waitFor('delay notice delivered to the sender', () => receiver.received.find((m) => m.to.includes('shop@espra.test') && /Action: delayed/.test(m.raw.toString())), 15_000)
    t.equal(notice.from, '', 'from the null sender')
    t.match(notice.raw.toString(), /Final-Recipient: rfc822; ann@dest\.test\r\nAction: delayed\r\nStatus: 4\./)
    t.match(notice.raw.toString(), /Will-Retry-Until: /)
    const rec = await waitFor('record done', async () => {
      const r = await record(id)
      return r.domains['dest.test']!.state === 'done' ? r : undefined
    })
    t.same(rec.domains['dest.test']!.delivered, ['ann@dest.test'])
    t.equal(rec.events.filter((e) => e.type === 'delay-warned').length, 1, 'one notice per domain')
    t.equal(receiver.received.filter((m) => m.to.includes('ann@dest.test')).length, 1)
  })

  t.test('past --mail-give-up a temporary failure bounces (and does not suppress)', async (t) => {
    front.state.mode = 'hang'
    const id = await sendVia('bob@dest.test', 'never')
    const bounced = await waitFor('gave up', async () => (await record(id)).events.find((e) => e.type === 'bounced'), 30_000)
    t.match(bounced.detail, /^gave up after \d+s; last answer: /)
    front.state.mode = 'ok'
    const dsn = await waitFor('bounce delivered', () => receiver.received.find((m) => m.to.includes('shop@espra.test') && /Final-Recipient: rfc822; bob@dest\.test\r\nAction: failed/.test(m.raw.toString())), 15_000)
    t.equal(dsn.from, '')
    t.equal(await ds.get('mailSuppression', 'bob@dest.test'), null, 'giving up is not a hard bounce')
    t.equal(receiver.received.filter((m) => m.to.includes('bob@dest.test')).length, 0)
  })
})
