import t from 'tap'
import { encodeFrame } from '../../lib/codec/frame.js'
import type { EspraError } from '../../lib/core/errors.js'
import { RawPeer, SECRET, sleep, until } from '../helpers/meta.js'
import { client, startTestSeed } from '../helpers/seed.js'

const DEADLINES = { handshakeTimeoutMs: 300, frameTimeoutMs: 200, idleTimeoutMs: 400, maxUnauthenticated: 8 }

function header(length: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(length, 0)
  return b
}

interface BadPeer {
  name: string
  code: string
  reason: RegExp
  /** What the seed tells the peer before dropping it, when it does. */
  told?: string
  /** May return the seed's answer to a handshake it drove. */
  act(peer: RawPeer): Promise<unknown> | void
}

const authenticated = async (peer: RawPeer) => {
  const welcome = await peer.handshake()
  if (welcome?.['t'] !== 'welcome') throw new Error(`no welcome: ${JSON.stringify(welcome)}`)
}

const BAD_PEERS: BadPeer[] = [
  { name: 'wrong secret', code: 'ESPRA_ERR_META_AUTH', reason: /wrong proof/, told: 'ESPRA_ERR_META_AUTH', act: (p) => p.handshake({ secret: 'not-the-cluster-secret' }) },
  { name: 'wrong version', code: 'ESPRA_ERR_META_VERSION', reason: /v2/, told: 'ESPRA_ERR_META_VERSION', act: (p) => p.handshake({ v: 2 }) },
  { name: 'garbage bytes (an HTTP request)', code: 'ESPRA_ERR_FRAME_TOO_LARGE', reason: /exceeds/, act: (p) => p.writeBytes(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')) },
  { name: 'garbage payload', code: 'ESPRA_ERR_FRAME_MALFORMED', reason: /not one msgpack value/, act: (p) => p.writeBytes(Buffer.concat([header(3), Buffer.from([0x82, 0xa1, 0x74])])) },
  { name: 'oversized frame before auth', code: 'ESPRA_ERR_FRAME_TOO_LARGE', reason: /4096-byte limit/, act: (p) => p.writeBytes(header(5000)) },
  { name: 'oversized frame after auth', code: 'ESPRA_ERR_FRAME_TOO_LARGE', reason: /1048576-byte limit/, act: async (p) => (await authenticated(p), p.writeBytes(header(2 * 1024 * 1024))) },
  { name: 'a non-map value', code: 'ESPRA_ERR_META_PROTOCOL', reason: /not a map/, act: async (p) => (await authenticated(p), p.write(42)) },
  { name: 'unknown message type', code: 'ESPRA_ERR_META_PROTOCOL', reason: /unknown message type 'bogus'/, act: async (p) => (await authenticated(p), p.write({ t: 'bogus' })) },
  { name: 'unknown one-way op', code: 'ESPRA_ERR_META_PROTOCOL', reason: /unknown one-way op 'launch'/, act: async (p) => (await authenticated(p), p.write({ t: 'msg', op: 'launch', body: {} })) },
  { name: 'a bad heartbeat body', code: 'ESPRA_ERR_META_BAD_REQUEST', reason: /heartbeat health/, act: async (p) => (await authenticated(p), p.write({ t: 'msg', op: 'heartbeat', body: { health: 'great' } })) },
  { name: 'auth without a peer kind', code: 'ESPRA_ERR_META_PROTOCOL', reason: /auth peer/, act: (p) => p.handshake({ kind: 'robot' }) },
  { name: 'slow loris (a frame that never finishes)', code: 'ESPRA_ERR_META_TIMEOUT', reason: /did not finish within 200 ms/, act: async (p) => (await authenticated(p), p.writeBytes(encodeFrame({ t: 'msg', op: 'heartbeat', body: {} }).subarray(0, 6))) },
  { name: 'silent before auth', code: 'ESPRA_ERR_META_TIMEOUT', reason: /handshake did not finish within 300 ms/, act: () => {} },
  { name: 'silent after auth', code: 'ESPRA_ERR_META_IDLE', reason: /nothing received/, act: authenticated },
]

t.test('the seed drops bad peers with one logged reason while a good peer keeps being served', async (t) => {
  const { port, lines } = await startTestSeed(t, {}, DEADLINES)
  const good = client(t, port, { keepAliveMs: 100 })
  await good.ready
  for (const bad of BAD_PEERS) {
    const peer = await RawPeer.open(port)
    const remote = `127.0.0.1:${peer.socket.localPort}`
    const answer = await bad.act(peer)
    const told: Record<string, unknown>[] = answer ? [answer as Record<string, unknown>] : []
    for (;;) {
      const frame = await peer.next(2000)
      if (frame === null) break
      told.push(frame)
    }
    t.ok(peer.isClosed || peer.socket.readableEnded, `${bad.name}: connection closed`)
    if (bad.told) t.ok(told.some((f) => f['t'] === 'error' && f['code'] === bad.told), `${bad.name}: peer told ${bad.told}`)
    const logged = await until(() => {
      const mine = lines.filter((l) => l['remote'] === remote && l.level !== 'debug')
      return mine.length > 0 ? mine : null
    }, 2000, `${bad.name}: log line`)
    await sleep(20)
    t.equal(lines.filter((l) => l['remote'] === remote && l.level !== 'debug').length, 1, `${bad.name}: exactly one line`)
    t.match(logged[0], { level: 'warn', msg: 'meta peer dropped', code: bad.code, reason: bad.reason }, `${bad.name}: reason logged`)
    const pong = await good.request<{ now: number }>('ping', {})
    t.type(pong.now, 'number', `${bad.name}: the good peer is still answered`)
    peer.destroy()
  }
  t.ok(good.connected, 'the good peer was never dropped (it pinged while idle)')
})

t.test('requests with an unknown op or a bad body get error answers, not a drop', async (t) => {
  const { port } = await startTestSeed(t, {}, DEADLINES)
  const admin = client(t, port)
  await admin.ready
  t.match(await admin.request('launch', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_UNKNOWN_OP' })
  t.match(await admin.request('register', { id: 'x' }).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_BAD_REQUEST', message: /only node peers/ })
  const node = client(t, port, { peer: { kind: 'node', id: 'n1' } })
  await node.ready
  t.match(await node.request('register', { id: 'n1', role: 'live' }).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_BAD_REQUEST', details: { field: 'region' } })
  t.match(await node.request('register', 'nonsense').catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_BAD_REQUEST' })
  t.match(await node.request('deregister', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_NOT_REGISTERED' })
  t.match(await node.request('routing', { region: 'Not A Region!' }).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_BAD_REQUEST' })
  t.match(await node.request('subscribe', { events: 'yes' }).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_BAD_REQUEST' })
  t.ok(node.connected && admin.connected, 'both links survive')
})

t.test('a flood of unauthenticated connections is capped', async (t) => {
  const { port, lines } = await startTestSeed(t, {}, { ...DEADLINES, handshakeTimeoutMs: 5000, maxUnauthenticated: 4 })
  const good = client(t, port)
  await good.ready
  const flood = await Promise.all([...Array(10).keys()].map(() => RawPeer.open(port)))
  t.teardown(() => flood.forEach((p) => p.destroy()))
  await until(() => flood.filter((p) => p.isClosed).length === 6, 2000, 'the extra connections to close')
  t.equal(flood.filter((p) => !p.isClosed).length, 4, 'only the cap stays open')
  t.ok(lines.some((l) => l['code'] === 'ESPRA_ERR_META_BUSY'), 'refusal logged')
  t.ok(lines.filter((l) => l['code'] === 'ESPRA_ERR_META_BUSY').length < 6, 'refusals are rate-limited in the log')
  t.type((await good.request<{ now: number }>('ping', {})).now, 'number', 'authenticated peers are unaffected')
  const refused = await Promise.all(flood.filter((p) => p.isClosed).map((p) => p.next()))
  t.ok(refused.every((f) => f?.['code'] === 'ESPRA_ERR_META_BUSY'), 'refused peers are told why')
  const before = lines.filter((l) => l.msg === 'meta peer left before authenticating').length
  for (const p of flood) p.destroy()
  await until(() => lines.filter((l) => l.msg === 'meta peer left before authenticating').length === before + 4, 2000, 'the seed to notice')
  const late = client(t, port)
  await late.ready
  t.ok(late.connected, 'new peers get in once the flood is gone')
})

t.test('mutual auth: the client refuses a seed that cannot prove the secret', async (t) => {
  const { port } = await startTestSeed(t)
  const wrong = client(t, port, { secret: 'another-secret-of-16+chars' })
  const err = (await wrong.ready.catch((e: EspraError) => e)) as EspraError
  t.match(err, { code: 'ESPRA_ERR_SEED_UNREACHABLE' })
  t.match(String(err.details?.['errors']), /authentication failed|wrong proof/, 'the reason is kept')
  t.ok(SECRET.length >= 16)
})
