import t, { type Test } from 'tap'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { encodeFrame } from '../../../lib/codec/frame.js'
import { EspraError } from '../../../lib/core/errors.js'
import { encodeMessage } from '../../../lib/transport/meta-frames.js'
import { MetaSession, type MessageHandler, type RequestHandler } from '../../../lib/transport/meta-session.js'
import { captureLog, sleep, until } from '../../helpers/meta.js'

const { log } = captureLog('silent')

/** Two ends of one real loopback TCP connection. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const accepted = once(server, 'connection')
  const a = connect({ host: '127.0.0.1', port })
  const [[b]] = await Promise.all([accepted, once(a, 'connect')])
  server.close()
  return [a, b as Socket]
}

interface Pair {
  a: MetaSession<string>
  b: MetaSession<string>
  reasons: { a: EspraError | null | undefined; b: EspraError | null | undefined }
}

async function pair(
  t: Test,
  bSide: { handlers?: [string, RequestHandler<string>][]; messages?: [string, MessageHandler<string>][]; onMessage?: (op: string, body: unknown) => void } = {},
  aSide: { requestTimeoutMs?: number; frameTimeoutMs?: number; maxFrame?: number } = {},
): Promise<Pair> {
  const [sa, sb] = await socketPair()
  const a = new MetaSession<string>({ socket: sa, maxFrame: aSide.maxFrame ?? 64 * 1024, log, context: 'a', ...aSide })
  const b = new MetaSession<string>({
    socket: sb, maxFrame: 64 * 1024, log, context: 'b', handlers: new Map(bSide.handlers ?? []),
    messages: new Map(bSide.messages ?? []), ...(bSide.onMessage ? { onMessage: bSide.onMessage } : {}),
  })
  const reasons: Pair['reasons'] = { a: undefined, b: undefined }
  a.onClose((r) => (reasons.a = r))
  b.onClose((r) => (reasons.b = r))
  a.open()
  b.open()
  t.teardown(() => {
    a.destroy()
    b.destroy()
  })
  return { a, b, reasons }
}

t.test('requests are answered by the op table, sync or async, with the caller context', async (t) => {
  const { a } = await pair(t, {
    handlers: [
      ['echo', (body, ctx) => ({ body, ctx })],
      ['later', async (body) => {
        await sleep(5)
        return { later: body }
      }],
      ['nothing', () => undefined],
    ],
  })
  t.same(await a.request('echo', { x: 1 }), { body: { x: 1 }, ctx: 'b' })
  t.same(await a.request('later', 7), { later: 7 })
  t.same(await a.request('nothing', null), {})
  const many = await Promise.all([...Array(50).keys()].map((i) => a.request<{ body: number }>('echo', i)))
  t.same(many.map((m) => m.body), [...Array(50).keys()], 'answers match their requests by id')
})

t.test('errors travel as code + message + details', async (t) => {
  const { a, reasons } = await pair(t, {
    handlers: [
      ['coded', () => {
        throw new EspraError('ESPRA_ERR_META_BAD_REQUEST', 'port must be a number', { field: 'port' })
      }],
      ['bug', async () => {
        throw new Error('oops')
      }],
    ],
  })
  const coded = await a.request('coded', {}).catch((e: EspraError) => e)
  t.match(coded, { code: 'ESPRA_ERR_META_BAD_REQUEST', message: 'port must be a number', details: { field: 'port' } })
  t.match(await a.request('bug', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_INTERNAL', message: 'oops' })
  for (const op of ['missing', '__proto__', 'constructor', 'toString']) {
    t.match(await a.request(op, {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_UNKNOWN_OP' }, op)
  }
  t.equal(a.state, 'open', 'the link survives failed requests')
  t.equal(reasons.a, undefined)
})

t.test('one-way messages reach their handler; an unknown one drops the sender', async (t) => {
  const got: unknown[] = []
  const { a, b, reasons } = await pair(t, { messages: [['heartbeat', (body) => void got.push(body)]] })
  t.equal(a.send('heartbeat', { n: 1 }), true)
  t.ok(a.sendEncoded(encodeMessage('heartbeat', { n: 2 })))
  await until(() => got.length === 2)
  t.same(got, [{ n: 1 }, { n: 2 }])
  a.send('bogus', {})
  await until(() => b.state === 'closed')
  t.match(reasons.b, { code: 'ESPRA_ERR_META_PROTOCOL', message: /unknown one-way op 'bogus'/ })
  await until(() => a.state === 'closed')
  t.match(reasons.a, { code: 'ESPRA_ERR_META_PROTOCOL', message: /peer said/ }, 'the sender learns why')
  t.equal(a.send('heartbeat', {}), false, 'send on a closed session reports false')
})

t.test('onMessage takes one-way ops missing from the table (client side)', async (t) => {
  const got: [string, unknown][] = []
  const { a } = await pair(t, { onMessage: (op, body) => void got.push([op, body]) })
  a.send('routing', { version: 1 })
  await until(() => got.length === 1)
  t.same(got, [['routing', { version: 1 }]])
})

t.test('the frames of one turn go out in one write', async (t) => {
  const got: unknown[] = []
  const { a } = await pair(t, { handlers: [['echo', (body) => body]], onMessage: (_op, body) => got.push(body) })
  const socket = (a as unknown as { socket: Socket & { _writev(...args: unknown[]): void; _write(...args: unknown[]): void } }).socket
  let writes = 0
  for (const name of ['_write', '_writev'] as const) {
    const original = socket[name].bind(socket)
    socket[name] = (...args: unknown[]) => {
      writes++
      original(...args)
    }
  }
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => a.request('echo', { i })))
  t.same(answers, Array.from({ length: 50 }, (_, i) => ({ i })), 'every answer, in order')
  t.equal(writes, 1, '50 requests of one turn: one write')
  for (let i = 0; i < 3; i++) a.send('note', { i })
  await until(() => got.length === 3, 2000, 'the messages')
  t.equal(writes, 2, 'three messages of one turn: one more write')
})

t.test('a peer that reads nothing is dropped once what waits for it passes the limit', async (t) => {
  const [sa, sb] = await socketPair()
  sb.pause()
  const a = new MetaSession<string>({ socket: sa, maxFrame: 64 * 1024, maxBufferedBytes: 256 * 1024, log, context: 'a' })
  let reason: EspraError | null | undefined
  a.onClose((r) => (reason = r))
  a.open()
  t.teardown(() => {
    a.destroy()
    sb.destroy()
  })
  const pad = 'x'.repeat(60_000)
  // The kernel's buffers take the first megabytes; past them the frames wait in the session until it gives up.
  for (let i = 0; i < 2000 && reason === undefined; i++) {
    a.send('fill', { pad })
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.match(reason, { code: 'ESPRA_ERR_META_SLOW_PEER' }, 'dropped as a slow peer')
  t.equal(a.state, 'closed')
})

t.test('a request without an answer times out; closing rejects what is pending', async (t) => {
  const { a, b } = await pair(t, { handlers: [['never', () => new Promise(() => {})]] }, { requestTimeoutMs: 50 })
  t.match(await a.request('never', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_TIMEOUT', details: { op: 'never' } })
  const pending = a.request('never', {}, 5000)
  b.destroy()
  t.match(await pending.catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_CLOSED' })
  t.match(await a.request('never', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_CLOSED' }, 'no requests after close')
})

t.test('close() lets a pending request finish, then ends the link', async (t) => {
  const { a, b, reasons } = await pair(t, {
    handlers: [['slow', async () => {
      await sleep(50)
      return 'done'
    }]],
  })
  const answer = a.request('slow', {})
  const closed = a.close()
  t.equal(await answer, 'done')
  await closed
  t.equal(a.state, 'closed')
  await until(() => b.state === 'closed')
  t.equal(reasons.a, null)
  t.equal(reasons.b, null, 'a clean close carries no reason')
})

t.test('an answer too big for a frame becomes an error answer', async (t) => {
  const { a } = await pair(t, { handlers: [['huge', () => 'x'.repeat(100 * 1024)]] })
  t.match(await a.request('huge', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_FRAME_TOO_LARGE' })
  t.match(await a.request('x', 'y'.repeat(100 * 1024)).catch((e: EspraError) => e), { code: 'ESPRA_ERR_FRAME_TOO_LARGE' }, 'checked before sending too')
  t.equal(a.state, 'open')
})

t.test('protocol violations drop the peer', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['not a map', encodeFrame([1, 2]), /not a map/],
    ['no t', encodeFrame({ op: 'x' }), /not a map/],
    ['unknown t', encodeFrame({ t: 'bogus' }), /unknown message type 'bogus'/],
    ['request without id', encodeFrame({ t: 'req', op: 'x' }), /numeric id/],
    ['response without ok', encodeFrame({ t: 'res', id: 1 }), /boolean ok/],
    ['oversized frame', Buffer.from([0x7f, 0, 0, 0]), /exceeds/],
  ]
  for (const [name, bytes, reason] of cases) {
    const [sa, sb] = await socketPair()
    const b = new MetaSession({ socket: sb, maxFrame: 1024, log, context: null })
    b.open()
    let why: EspraError | null = null
    b.onClose((r) => (why = r))
    sa.on('error', () => {})
    sa.write(bytes)
    await until(() => b.state === 'closed', 2000, name)
    t.match(why, { message: reason }, name)
    sa.destroy()
  }
})

t.test('a frame that starts but never finishes is dropped (slow loris)', async (t) => {
  const [sa, sb] = await socketPair()
  t.teardown(() => sa.destroy())
  const b = new MetaSession({ socket: sb, maxFrame: 1024, log, context: null, frameTimeoutMs: 100 })
  let why: EspraError | null = null
  b.onClose((r) => (why = r))
  b.open()
  const frame = encodeFrame({ t: 'msg', op: 'x', body: 'y'.repeat(50) })
  sa.write(frame.subarray(0, 10))
  await sleep(60)
  sa.write(frame.subarray(10, 20)) // trickling bytes do not extend the deadline
  await until(() => b.state === 'closed', 1000)
  t.match(why, { code: 'ESPRA_ERR_META_TIMEOUT', message: /did not finish within 100 ms/ })
})

t.test('an open session that hears nothing is dropped after the idle limit', async (t) => {
  const [sa, sb] = await socketPair()
  t.teardown(() => sa.destroy())
  const b = new MetaSession({ socket: sb, maxFrame: 1024, log, context: null })
  let why: EspraError | null = null
  b.onClose((r) => (why = r))
  b.open({ idleTimeoutMs: 150 })
  for (let i = 0; i < 4; i++) {
    await sleep(60)
    sa.write(encodeFrame({ t: 'res', id: 99, ok: true, body: {} })) // late answers count as traffic
  }
  t.equal(b.state, 'open', 'traffic keeps it alive')
  await until(() => b.state === 'closed', 1000)
  t.match(why, { code: 'ESPRA_ERR_META_IDLE' })
})

t.test('handshake phase: frames queue for nextFrame until open()', async (t) => {
  const [sa, sb] = await socketPair()
  const a = new MetaSession({ socket: sa, maxFrame: 1024, log, context: null })
  const b = new MetaSession({ socket: sb, maxFrame: 1024, log, context: null, handlers: new Map([['ping', () => 'pong']]) })
  t.teardown(() => (a.destroy(), b.destroy()))
  a.writeValue({ t: 'hello', n: 1 })
  t.same(await b.nextFrame(), { t: 'hello', n: 1 })
  const waiting = b.nextFrame()
  a.writeValue({ t: 'auth', n: 2 })
  t.same(await waiting, { t: 'auth', n: 2 })
  t.match(await a.request('ping', {}).catch((e: EspraError) => e), { code: 'ESPRA_ERR_META_CLOSED' }, 'no requests before open')
  a.open({ maxFrame: 4096 })
  const answer = a.request('ping', {})
  await sleep(20)
  b.open()
  t.equal(await answer, 'pong', 'a request that arrived during the handshake is served after open')
  a.writeValue({ t: 'error', code: 'ESPRA_ERR_META_AUTH', message: 'go away' })
  await until(() => b.state === 'closed')
})
