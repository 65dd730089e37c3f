// The child-side drain, in-process on a real uWS app with a slow route: in-flight work finishes, nothing is reset.
import t from 'tap'
import type { Test } from 'tap'
import { Agent, request } from 'node:http'
import { connect, createServer } from 'node:net'
import { answerLater, createHttpServer, sendJson, type HttpServer } from '../../../lib/http/server.js'
import { uws } from '../../../lib/http/uws.js'
import { EspraError } from '../../../lib/core/errors.js'
import { get } from '../../helpers/cluster.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Answers the server's latency counts hold per status class ('1xx' … '5xx'). */
function answeredByClass(server: HttpServer): Record<string, number> {
  const latency = server.stats().latency!
  const per = latency.counts.length / 5
  const out: Record<string, number> = {}
  for (let c = 0; c < 5; c++) out[`${c + 1}xx`] = latency.counts.slice(c * per, (c + 1) * per).reduce((a, b) => a + b, 0)
  return out
}

/** A server with `/slow?ms=N` answering after N ms, `/fast`, `/throw`, `/reject` and `/stream`. */
async function serve(t: Test): Promise<{ server: HttpServer; port: number; errors: unknown[] }> {
  const errors: unknown[] = []
  const server = createHttpServer(uws.App(), (err) => errors.push(err))
  server.app.get('/slow', (res, req) => {
    const ms = Number(req.getQuery('ms') ?? 300)
    let aborted = false
    res.onAborted(() => (aborted = true))
    setTimeout(() => {
      if (!aborted) res.cork(() => sendJson(res, 200, { slept: ms }))
    }, ms)
  })
  server.app.get('/fast', (res) => sendJson(res, 200, { fast: true }))
  server.app.get('/throw', () => {
    throw new Error('secret internals')
  })
  server.app.get('/reject', async (res) => {
    await sleep(5)
    void res
    throw new EspraError('ESPRA_ERR_HTTP_DRAINING')
  })
  server.app.get('/stream', (res) => {
    res.writeStatus('200 OK')
    res.write('part one, ')
    res.tryEnd('part two', 'part one, '.length + 'part two'.length)
  })
  server.app.any('/head', (res, req) => {
    res.writeStatus('200 OK').writeHeader('X-Head', '1')
    if (req.getQuery('length') === undefined) res.endWithoutBody()
    else res.endWithoutBody(Number(req.getQuery('length')))
  })
  const port = await server.listen('127.0.0.1', 0)
  t.teardown(() => server.destroy())
  return { server, port, errors }
}

t.test('drain lets slow in-flight requests finish, closes keep-alive connections, refuses new ones', async (t) => {
  const { server, port } = await serve(t)
  const agent = new Agent({ keepAlive: true, maxSockets: 20 })
  t.teardown(() => agent.destroy())
  const streamAgent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => streamAgent.destroy())
  t.equal((await get(port, '/fast', streamAgent)).headers['connection'], undefined, 'keep-alive before the drain')
  const slow = Array.from({ length: 20 }, () => get(port, '/slow?ms=400', agent))
  await sleep(100)
  t.equal(server.stats().inflight, 20, '20 requests in flight')
  const drained = server.drain({ timeoutMs: 5000, quietMs: 100 })
  t.ok(server.draining)
  const streamed = await get(port, '/stream', streamAgent)
  t.equal(streamed.body, 'part one, part two')
  t.equal(streamed.headers['connection'], 'close', 'a streamed answer also says Connection: close')
  const answers = await Promise.all(slow)
  t.ok(answers.every((a) => a.status === 200), 'every in-flight request answered 200')
  t.ok(answers.every((a) => a.headers['connection'] === 'close'), 'with Connection: close')
  t.same(await drained, { cut: 0 }, 'nothing cut')
  const { latency: _latency, ...counts } = server.stats()
  t.same(counts, { inflight: 0, tracked: 0, requests: 22 })
  t.same(answeredByClass(server), { '1xx': 0, '2xx': 22, '3xx': 0, '4xx': 0, '5xx': 0 }, 'every answer in the latency counts, as 2xx')
  await t.rejects(get(port, '/fast'), { code: 'ECONNREFUSED' }, 'no longer accepting')
})

t.test('drain waits for tracked work and cuts what outlives the deadline', async (t) => {
  const { server, port } = await serve(t)
  const untrack = server.track()
  const stuck = get(port, '/slow?ms=3000').catch((err: NodeJS.ErrnoException) => err.code)
  await sleep(50)
  const drained = server.drain({ timeoutMs: 300 })
  t.equal(server.drain({ timeoutMs: 10 }), drained, 'a second drain joins the first')
  t.same(await drained, { cut: 2 }, 'the slow request and the tracked work were cut')
  t.equal(await stuck, 'ECONNRESET', 'the cut request saw its connection close before its 3 s answer')
  untrack()
  untrack()
  t.equal(server.stats().tracked, 0, 'untrack is idempotent')
})

t.test('handler errors become coded JSON answers; aborted requests leave nothing in flight', async (t) => {
  const { server, port, errors } = await serve(t)
  const thrown = await get(port, '/throw')
  t.equal(thrown.status, 500)
  t.same(JSON.parse(thrown.body), { code: 'ESPRA_ERR_INTERNAL', message: 'internal error' }, 'internals not leaked')
  const rejected = await get(port, '/reject')
  t.equal(rejected.status, 503)
  t.equal(JSON.parse(rejected.body).code, 'ESPRA_ERR_HTTP_DRAINING')
  t.equal(errors.length, 2, 'both reported')
  const streamed = await get(port, '/stream')
  t.equal(streamed.body, 'part one, part two')

  const req = request({ host: '127.0.0.1', port, path: '/slow?ms=500', agent: false })
  req.on('error', () => {})
  req.end()
  await sleep(50)
  t.equal(server.stats().inflight, 1)
  req.destroy()
  await sleep(50)
  t.equal(server.stats().inflight, 0, 'an aborted request is no longer in flight')
  t.same(answeredByClass(server), { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 2 }, 'the 500 and the 503 as 5xx, the stream as 2xx, the aborted request not at all')
})

t.test('regression: endWithoutBody() with or without a length keeps the keep-alive connection usable', async (t) => {
  const { port } = await serve(t)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const send = (method: string, path: string) => new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
  const head = await send('HEAD', '/head')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], undefined, 'no made-up Content-Length')
  t.equal((await send('GET', '/fast')).status, 200, 'the same keep-alive connection answers the next request')
  t.equal((await send('HEAD', '/head?length=42')).headers['content-length'], '42', 'a given length is sent')
  t.equal((await send('GET', '/fast')).status, 200, 'and the connection still answers after it')
  t.equal((await send('HEAD', '/head?length=0')).headers['content-length'], '0', 'a length of 0 too')
})

t.test('listen reports a port it cannot have as ESPRA_ERR_NODE_LISTEN', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as { port: number }).port
  const server = createHttpServer(uws.App(), () => {})
  t.teardown(() => server.destroy())
  await t.rejects(server.listen('127.0.0.1', port), { code: 'ESPRA_ERR_NODE_LISTEN' })
})

t.test('regression: an answer written after an await to a client that hung up is skipped, not thrown', async (t) => {
  const errors: unknown[] = []
  const server = createHttpServer(uws.App(), (err) => errors.push(err))
  t.teardown(() => server.destroy())
  // Routes answer once the test opens the gate, the way Live answered after a reply from its parent,
  // with no onAborted of their own: through answerLater, or by corking (and closing) directly.
  let open!: () => void
  let gate = new Promise<void>((resolve) => (open = resolve))
  const written: boolean[] = []
  const pending: Promise<void>[] = []
  server.app.get('/helper', (res) => void pending.push(gate.then(() => void written.push(answerLater(res, () => sendJson(res, 200, { late: true }))))))
  server.app.get('/cork', (res) => void pending.push(gate.then(() => {
    res.cork(() => sendJson(res, 200, { late: true }))
    res.close()
  })))
  const port = await server.listen('127.0.0.1', 0)
  const hangUp = (bytes: string) => new Promise<void>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(bytes))
    socket.on('error', () => {})
    socket.on('close', () => resolve())
  })
  const line = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`
  // Gone before the answer; and two pipelined requests (uWS closes the connection when the second arrives while the first waits).
  await Promise.all([hangUp(line('/helper')), hangUp(line('/cork')), hangUp(line('/helper') + line('/helper')), hangUp(line('/cork') + line('/cork'))])
  while (server.stats().inflight > 0 || pending.length < 4) await sleep(10)
  open()
  await Promise.all(pending)
  t.ok(written.length >= 2 && written.every((w) => !w), 'answerLater wrote nothing and said so')
  t.same(errors, [], 'nothing thrown')
  gate = Promise.resolve()
  const answer = await get(port, '/helper')
  t.equal(answer.status, 200, 'a client that waits gets its answer')
  t.equal(written.at(-1), true)
})

t.test('two servers in one process keep their own drain and counts; a plain uWS app beside them keeps uWS behaviour', async (t) => {
  // The response methods are replaced once per uWS prototype, shared by every app of the process: each response must still belong to its own server.
  const one = await serve(t)
  const two = await serve(t)
  const plain = uws.App()
  let plainAborted = 0
  plain.get('/later', (res) => {
    res.onAborted(() => plainAborted++)
    setTimeout(() => res.cork(() => void res.writeStatus('200 OK').end('plain')), 20)
  })
  plain.get('/leave', (res) => void res.onAborted(() => plainAborted++))
  const plainPort = await new Promise<number>((resolve, reject) => plain.listen('127.0.0.1', 0, (s) => (s ? resolve(uws.us_socket_local_port(s as never)) : reject(new Error('no port')))))
  t.teardown(() => plain.close())
  const agentOne = new Agent({ keepAlive: true, maxSockets: 1 })
  const agentTwo = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => (agentOne.destroy(), agentTwo.destroy()))
  t.equal((await get(one.port, '/fast', agentOne)).status, 200)
  t.equal((await get(two.port, '/fast', agentTwo)).status, 200)
  const drained = two.server.drain({ timeoutMs: 2000, quietMs: 50 })
  t.equal((await get(two.port, '/fast', agentTwo)).headers['connection'], 'close', 'the draining server says Connection: close')
  t.equal((await get(one.port, '/fast', agentOne)).headers['connection'], undefined, 'the other one does not')
  t.notOk(one.server.draining)
  const later = await get(plainPort, '/later')
  t.equal(later.body, 'plain', 'a plain app answers after its own onAborted, as uWS does')
  const leave = request({ host: '127.0.0.1', port: plainPort, path: '/leave', agent: false })
  leave.on('error', () => {})
  leave.end()
  await sleep(50)
  leave.destroy()
  while (plainAborted === 0) await sleep(10)
  t.equal(plainAborted, 1, 'and hears its client leave')
  t.same(await drained, { cut: 0 })
  t.equal(one.server.stats().requests, 2, 'each server counts its own requests')
  t.equal(two.server.stats().requests, 2)
  t.equal(one.server.stats().inflight, 0)
})
