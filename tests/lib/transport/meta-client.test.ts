import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { encodeFrame, FrameDecoder } from '../../../lib/codec/frame.js'
import type { EspraError } from '../../../lib/core/errors.js'
import { deriveMetaKey, newNonce, serverProof } from '../../../lib/transport/meta-auth.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import type { NodeView } from '../../../lib/transport/meta-shapes.js'
import { captureLog, nodeInfo, SECRET, sleep, until } from '../../helpers/meta.js'
import { client, startTestSeed } from '../../helpers/seed.js'

/** A port nobody listens on (bound then released). */
async function deadPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

/**
 * A hand-written seed that greets with `hello` and then lets `onAuth` decide
 * what to send back (bad proof, right proof then silence, ...).
 */
async function fakeSeed(t: Test, onAuth: (auth: Record<string, unknown>, seedNonce: Buffer, socket: Socket) => void, hello: Record<string, unknown> = {}): Promise<number> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    const nonce = newNonce()
    const decoder = new FrameDecoder(4096)
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk) as Record<string, unknown>[]) if (frame['t'] === 'auth') onAuth(frame, nonce, socket)
    })
    socket.write(encodeFrame({ t: 'hello', v: 1, nonce, seed: 'fake', ...hello }))
  }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return (server.address() as { port: number }).port
}

t.test('every seed unreachable: ready rejects with each reason (reconnect false)', async (t) => {
  const [a, b] = [await deadPort(), await deadPort()]
  const c = client(t, [a, b])
  const err = (await c.ready.catch((e: EspraError) => e)) as EspraError
  t.match(err, { code: 'ESPRA_ERR_SEED_UNREACHABLE' })
  t.match(err.details, { errors: [new RegExp(`127.0.0.1:${a}: .*ECONNREFUSED`), new RegExp(`127.0.0.1:${b}: .*ECONNREFUSED`)] })
  t.equal(c.connected, false)
  t.equal(c.send('heartbeat', {}), false, 'send without a link drops the message')
  t.match(await c.request('ping', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_CLOSED' })
})

t.test('a bad seed address is a config error', async (t) => {
  t.throws(() => createMetaClient({ seeds: ['nonsense'], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024, log: captureLog('silent').log, reconnect: false }), {
    code: 'ESPRA_ERR_CONFIG_INVALID',
  })
})

t.test('the first reachable seed is used; IPv6 literals are accepted', async (t) => {
  const { port } = await startTestSeed(t)
  const dead = await deadPort()
  const c = client(t, [dead, port])
  await c.ready
  t.equal(c.seed, `127.0.0.1:${port}`)
  t.type((await c.request<{ now: number }>('ping', {})).now, 'number')
  const v6 = createMetaClient({ seeds: [`[::1]:${dead}`], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 1024, log: captureLog('silent').log, reconnect: false })
  t.match(await v6.ready.catch((e: EspraError) => e), { code: 'ESPRA_ERR_SEED_UNREACHABLE' })
})

t.test('mutual auth: a seed with a wrong proof is refused', async (t) => {
  const port = await fakeSeed(t, (_auth, _nonce, socket) => socket.write(encodeFrame({ t: 'welcome', proof: Buffer.alloc(32) })))
  const c = client(t, port)
  const err = (await c.ready.catch((e: EspraError) => e)) as EspraError
  t.match(err, { code: 'ESPRA_ERR_SEED_UNREACHABLE' })
  t.match(String(err.details?.['errors']), /could not prove it knows the cluster secret/)
})

t.test('pushes sent in the same write as the welcome are delivered once the session opens, in order', async (t) => {
  const key = deriveMetaKey(SECRET)
  // The seed counts the session open once its welcome is written and may push at once: here five pushes
  // share one write with the welcome, so they reach the client before it has opened the session.
  const port = await fakeSeed(t, (auth, seedNonce, socket) => socket.write(Buffer.concat([
    encodeFrame({ t: 'welcome', proof: serverProof(key, auth['nonce'] as Buffer, seedNonce) }),
    ...[1, 2, 3, 4, 5].map((n) => encodeFrame({ t: 'msg', op: 'routing', body: { n } })),
  ])))
  const pushes: unknown[] = []
  const c = client(t, port, { onPush: (_op, body) => pushes.push(body) })
  await c.ready
  await until(() => pushes.length === 5)
  t.same(pushes, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }])
  t.equal(c.seed, `127.0.0.1:${port}`, 'the link stayed up')
})

t.test('a seed speaking another protocol version is refused', async (t) => {
  const port = await fakeSeed(t, () => {}, { v: 2 })
  const err = (await client(t, port).ready.catch((e: EspraError) => e)) as EspraError
  t.match(String(err.details?.['errors']), /seed speaks meta protocol v2/)
})

t.test('a seed that stops answering is noticed by the keep-alive ping', async (t) => {
  const key = deriveMetaKey(SECRET)
  // Authenticates correctly, then never answers anything.
  const port = await fakeSeed(t, (auth, seedNonce, socket) => {
    socket.write(encodeFrame({ t: 'welcome', proof: serverProof(key, auth['nonce'] as Buffer, seedNonce) }))
  })
  const c = client(t, port, { keepAliveMs: 100 })
  await c.ready
  t.ok(c.connected)
  await until(() => !c.connected, 2000, 'the link to drop')
})

t.test('a labelled link (a Live node to another) names its peer, not a seed, in its log lines and errors', async (t) => {
  const key = deriveMetaKey(SECRET)
  const port = await fakeSeed(t, (auth, seedNonce, socket) => {
    socket.write(encodeFrame({ t: 'welcome', proof: serverProof(key, auth['nonce'] as Buffer, seedNonce) }))
  })
  const { log, lines } = captureLog('info')
  const c = client(t, port, { keepAliveMs: 100, label: 'Live node live-b', log })
  await c.ready
  await until(() => !c.connected, 2000, 'the link to drop')
  t.match(lines.find((l) => l.msg === 'meta link up'), { link: 'Live node live-b', address: `127.0.0.1:${port}` })
  t.notOk(lines.some((l) => 'seed' in l), 'no line calls the peer a seed')
  t.match(lines.find((l) => l.msg === 'meta link down'), { link: 'Live node live-b', code: 'ESPRA_ERR_META_TIMEOUT', reason: /a ping to the Live node live-b did not finish/ })

  const silent = await fakeSeed(t, () => {})
  const err = (await client(t, silent, { label: 'Live node live-c', handshakeTimeoutMs: 200 }).ready.catch((e: EspraError) => e)) as EspraError
  t.match(String(err.details?.['errors']), /handshake with Live node live-c 127\.0\.0\.1:\d+ did not finish/)
})

t.test('reconnects after the seed restarts and re-runs onConnect', async (t) => {
  const first = await startTestSeed(t)
  const port = first.port
  let connects = 0
  const events: string[] = []
  const node = client(t, port, {
    reconnect: true, peer: { kind: 'node', id: 'n-restart' }, backoffMaxMs: 200,
    onConnect: async (link) => {
      connects++
      await link.request('register', nodeInfo('n-restart'))
    },
  })
  node.on('connected', () => events.push('connected'))
  node.on('disconnected', () => events.push('disconnected'))
  await node.ready
  t.equal(node.connected, true)
  first.seed.destroy()
  await until(() => events.includes('disconnected'), 2000, 'disconnected')
  t.equal(node.connected, false)
  await sleep(300) // a few failed attempts against nobody
  const second = await startTestSeed(t, { metaPort: port })
  await until(() => node.connected, 5000, 'reconnected')
  t.equal(connects, 2, 'onConnect ran again')
  t.same(events, ['connected', 'disconnected', 'connected'])
  const admin = client(t, second.port)
  await admin.ready
  t.match(await admin.request<NodeView[]>('nodes', {}), [{ id: 'n-restart', connected: true }], 'registered with the new seed')
})

t.test('fails over to the next seed when the current one dies', async (t) => {
  const a = await startTestSeed(t)
  const b = await startTestSeed(t)
  const c = client(t, [a.port, b.port], { reconnect: true, backoffMaxMs: 100 })
  await c.ready
  t.equal(c.seed, `127.0.0.1:${a.port}`)
  a.seed.destroy()
  await until(() => c.seed === `127.0.0.1:${b.port}`, 3000, 'the understudy')
})

t.test('an idle admin link pings and outlives the seed idle limit', async (t) => {
  const { port } = await startTestSeed(t, {}, { idleTimeoutMs: 300 })
  const c = client(t, port, { keepAliveMs: 150 })
  await c.ready
  await sleep(900)
  t.ok(c.connected, 'still linked after three idle limits')
  const silent = client(t, port, { keepAliveMs: 0 })
  await silent.ready
  await until(() => !silent.connected, 2000, 'a link that never pings is dropped')
})

t.test('close() before the first connect rejects ready and stops retrying', async (t) => {
  const c = client(t, await deadPort(), { reconnect: true, backoffMinMs: 60_000, backoffMaxMs: 60_000 })
  await sleep(50)
  const first = await Promise.race([c.close().then(() => 'closed'), sleep(10_000).then(() => 'still waiting')])
  t.equal(first, 'closed', 'close does not wait out a one-minute backoff')
  t.match(await c.ready.catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_CLOSED' })
})
