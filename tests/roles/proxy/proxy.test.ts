// The proxy for real: a real seed, a real proxy node (2 children), real HTTP backends registered as Live nodes.
import { request, Agent, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import { WebSocket } from 'ws'
import { startNode, waitFor } from '../../helpers/cluster.js'
import { Rendezvous } from '../../../lib/routing/rendezvous.js'
import { BYTES, cluster, HOST, raw, send, startBackend, totalHits, waitForTable } from '../../helpers/proxy-cluster.js'
import { sendForBytes } from '../../helpers/http.js'
import { nodeClient } from '../../helpers/seed.js'

t.test('quick answers never reach a Live node', async (t) => {
  const { proxy, backends } = await cluster(t, { 'max-header-size': '2KB' })

  const unknown = await send(proxy.port, { headers: { host: 'example.com' } })
  t.equal(unknown.status, 404)
  t.match(JSON.parse(unknown.body), { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: /us-1\.live\.localhost/ })

  const malformed = await raw(proxy.port, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nNo colon here\r\n\r\n`)
  t.match(malformed, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(malformed, /ESPRA_ERR_PROXY_BAD_REQUEST/)
  const smuggle = await raw(proxy.port, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`)
  t.match(smuggle, /^HTTP\/1\.1 400 /, 'Content-Length with Transfer-Encoding is refused')
  const garbage = await raw(proxy.port, 'hello there\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 /)

  const big = await raw(proxy.port, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431 /)
  t.match(big, /ESPRA_ERR_PROXY_HEADERS_TOO_LARGE/)

  const h = await send(proxy.port, { path: '/_espra/health', headers: { host: '10.0.0.5:8080' } })
  t.equal(h.status, 200, 'health answers on the proxy itself, whatever the Host')
  t.match(JSON.parse(h.body), { ok: true, role: 'proxy' })

  t.equal(totalHits(backends), 0, 'no backend saw any of these')
  const ok = await send(proxy.port, {})
  t.equal(ok.status, 200, 'a good request does get through')
  t.equal(totalHits(backends), 1)
})

t.test('per-address limits answer 429 without reaching a Live node', async (t) => {
  const { proxy, backends } = await cluster(t, { children: 1, 'max-rps-per-address': 5, 'max-conns-per-address': 3 }, ['live-a'])
  // 20 pipelined requests in one write: the first 5 pass, the sixth is answered 429 and the connection closes.
  const one = `GET /x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`
  const out = await raw(proxy.port, one.repeat(20))
  t.equal(out.match(/HTTP\/1\.1 200 OK/g)?.length, 5)
  t.match(out, /HTTP\/1\.1 429 Too Many Requests[\s\S]*ESPRA_ERR_PROXY_TOO_MANY_REQUESTS/)
  t.equal(backends[0]!.hits.length, 5)

  // Three open connections are allowed; the fourth is answered 429.
  const held = await Promise.all([0, 1, 2].map(() => new Promise<ReturnType<typeof connect>>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: proxy.port }, () => resolve(s))
  })))
  await waitFor('the proxy counted the held connections', async () => {
    const fourth = await raw(proxy.port, one)
    return /^HTTP\/1\.1 429 [\s\S]*ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS/.test(fourth)
  })
  for (const s of held) s.destroy()
  t.ok(backends[0]!.hits.length <= 10, 'refused connections never reached the backend')
})

t.test('routing: cookie, configured handlers, client address; rendezvous picks the node', async (t) => {
  const { proxy, table } = await cluster(t, { 'route-keys': 'path:/ch/,query:channel,header:x-espra-key,cookie:espra_session,ip' })
  const owner = (key: string) => table.pick(key)!.id
  // Enough keys that both nodes own some.
  const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`)
  t.ok(new Set(keys.map(owner)).size === 2, 'the keys spread over both nodes')
  for (const key of keys) {
    t.equal(JSON.parse((await send(proxy.port, { headers: { cookie: `a=1; espra_session=${key}; b=2` } })).body).id, owner(key), `cookie ${key}`)
    t.equal(JSON.parse((await send(proxy.port, { path: `/ch/${key}/messages` })).body).id, owner(key), `path ${key}`)
    t.equal(JSON.parse((await send(proxy.port, { path: `/poll?x=1&channel=${key}` })).body).id, owner(key), `query ${key}`)
    t.equal(JSON.parse((await send(proxy.port, { headers: { 'x-espra-key': key } })).body).id, owner(key), `header ${key}`)
  }
  // The path handler comes first in the table, so it wins over the cookie.
  t.equal(JSON.parse((await send(proxy.port, { path: `/ch/${keys[0]}`, headers: { cookie: `espra_session=${keys[1]}` } })).body).id, owner(keys[0]!))
  // Nothing else: the client address.
  t.equal(JSON.parse((await send(proxy.port, {})).body).id, owner('127.0.0.1'))
})

t.test('keep-alive with bodies, chunked both ways, X-Forwarded-For/-Proto', async (t) => {
  const { proxy, backends } = await cluster(t, {}, ['live-a'])
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const post = await send(proxy.port, { method: 'POST', path: '/echo', body: 'x'.repeat(100_000), headers: { 'content-length': '100000' }, agent })
  t.equal(JSON.parse(post.body).body.length, 100_000, 'a Content-Length body arrives whole')
  const chunkedPost = await send(proxy.port, { method: 'POST', path: '/echo', body: ['a', 'b'.repeat(5000), 'c'], agent })
  const echoed = JSON.parse(chunkedPost.body)
  t.equal(echoed.headers['transfer-encoding'], 'chunked')
  t.equal(echoed.body, `a${'b'.repeat(5000)}c`, 'a chunked request body arrives whole')
  const chunked = await send(proxy.port, { path: '/chunked', agent })
  t.equal(chunked.headers['transfer-encoding'], 'chunked')
  t.equal(chunked.body, 'one,two,three')
  for (let i = 0; i < 5; i++) t.equal((await send(proxy.port, { path: `/k${i}`, agent })).status, 200)
  t.equal(backends[0]!.connections, 1, 'eight requests over one client connection used one backend connection')

  const fwd = JSON.parse((await send(proxy.port, {})).body)
  t.equal(fwd.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(fwd.headers['x-forwarded-proto'], 'http')
  t.equal(fwd.headers.host, HOST, 'the Host is passed through')
  const chained = JSON.parse((await send(proxy.port, { headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' } })).body)
  t.equal(chained.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'an existing X-Forwarded-For is extended')
  t.equal(chained.headers['x-forwarded-proto'], 'https', 'an existing X-Forwarded-Proto is kept')

  // The Live node closes its connection as a request arrives, before answering: a safe request is sent
  // again once, on a new connection; a request with a body never is.
  const hitsBefore = backends[0]!.hits.length
  const retried = await send(proxy.port, { path: '/drop-once?a', agent })
  t.equal(retried.status, 200, 'a GET whose Live connection closed under it is answered')
  t.equal(JSON.parse(retried.body).url, '/drop-once?a')
  t.equal(backends[0]!.hits.length - hitsBefore, 2, 'it reached the node twice')
  const fresh = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => fresh.destroy())
  const posted = await send(proxy.port, { method: 'POST', path: '/drop-once?b', body: 'x', headers: { 'content-length': '1' }, agent: fresh })
  t.equal(posted.status, 502, 'a POST is not sent again: 502')
  t.match(JSON.parse(posted.body), { code: 'ESPRA_ERR_PROXY_UPSTREAM' })
  t.equal(backends[0]!.hits.filter((h) => h.url === '/drop-once?b').length, 1, 'the POST reached the node once')
  // A pipelined pair of GETs behind a dropped one all come back, in order.
  const pipelined = await raw(proxy.port, `GET /drop-once?c HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /after HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
  t.match(pipelined, /^HTTP\/1\.1 200 OK[\s\S]*"url":"\/drop-once\?c"[\s\S]*HTTP\/1\.1 200 OK[\s\S]*"url":"\/after"/, 'both answered, in order')
})

t.test('answers of every framing over one kept-alive connection, bytes untouched', async (t) => {
  // Each answer here comes in one read: the proxy's path for a whole response read as text.
  const { proxy, backends } = await cluster(t, {}, ['live-a'])
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = (path: string, method = 'GET') => sendForBytes({ host: '127.0.0.1', port: proxy.port, path, method, agent, headers: { host: HOST } })
  for (let round = 0; round < 2; round++) {
    const bytes = await get('/bytes')
    t.same(bytes.body, BYTES, 'a binary body arrives byte for byte')
    const head = await get('/bytes', 'HEAD')
    t.equal(head.status, 200)
    t.equal(head.headers['content-length'], String(BYTES.length), 'HEAD: the length of a body not sent')
    t.equal(head.body.length, 0)
    t.equal((await get('/status/204')).status, 204)
    t.equal((await get('/status/304')).status, 304)
    t.equal(JSON.parse((await get('/after')).body.toString()).url, '/after', 'the connection reads on after each')
  }
  t.equal(backends[0]!.connections, 1, 'one backend connection for all of them')
})

function openWs(port: number, path = '/ws', key = 'ws-client'): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host: HOST, cookie: `espra_session=${key}` } })
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (data) => resolve(String(data))))
}

function openSse(port: number, key: string): Promise<{ res: IncomingMessage; events: string[]; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/sse', agent: false, headers: { host: HOST, cookie: `espra_session=${key}`, accept: 'text/event-stream' } }, (res) => {
      const events: string[] = []
      res.setEncoding('utf8')
      res.on('data', (d: string) => events.push(d))
      const ended = new Promise<void>((done) => {
        res.on('end', () => done())
        res.on('error', () => done())
        res.on('close', () => done())
      })
      resolve({ res, events, ended })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('WebSocket and SSE stream through the proxy', async (t) => {
  const { proxy, backends } = await cluster(t, {}, ['live-a'])
  const ws = await openWs(proxy.port)
  for (let i = 0; i < 3; i++) {
    const answer = nextMessage(ws)
    ws.send(`ping ${i}`)
    t.equal(await answer, `live-a:ping ${i}`)
  }
  ws.close()

  const sse = await openSse(proxy.port, 'sse-client')
  t.equal(sse.res.headers['content-type'], 'text/event-stream')
  await waitFor('first event', () => sse.events.join('').includes('data: hello from live-a'))
  // The second event is sent only after the first arrived: the proxy streams, it does not buffer.
  backends[0]!.streams[0]!.write('data: second\n\n')
  await waitFor('second event', () => sse.events.join('').includes('data: second'))
  sse.res.destroy()
})

t.test('a Live node leaving: its clients are told to reconnect and land on the remaining node', async (t) => {
  const { proxy, backends, lives, table } = await cluster(t)
  // Keys owned by live-b now.
  const keys = Array.from({ length: 40 }, (_, i) => `k${i}`).filter((k) => table.pick(k)!.id === 'live-b').slice(0, 2)
  const ws = await openWs(proxy.port, '/ws', keys[0])
  const answer = nextMessage(ws)
  ws.send('hi')
  t.equal(await answer, 'live-b:hi')
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })))
  const sse = await openSse(proxy.port, keys[1]!)
  await waitFor('sse from live-b', () => sse.events.join('').includes('hello from live-b'))

  // live-b leaves the seed's registry (its server keeps running: only the table changes).
  await lives[1]!.request('deregister', {})
  lives[1]!.stopHeartbeat()
  await waitForTable(proxy, ['live-a'])

  t.match(await closed, { code: 1012, reason: /reconnect/ }, 'the WebSocket got close 1012 with a reconnect hint')
  await sse.ended
  t.ok(sse.res.complete, 'the SSE response ended cleanly (EventSource reconnects)')

  const again = await openWs(proxy.port, '/ws', keys[0])
  const moved = nextMessage(again)
  again.send('back')
  t.equal(await moved, 'live-a:back', 'the reconnect lands on the remaining node')
  again.close()
  const before = backends[1]!.hits.length
  for (const key of keys) t.equal(JSON.parse((await send(proxy.port, { headers: { cookie: `espra_session=${key}` } })).body).id, 'live-a')
  t.equal(backends[1]!.hits.length, before, 'nothing more reached the node that left')
})

t.test('a kept-alive connection idle when its Live node left carries its next exchange to the new owner as any other', async (t) => {
  const { proxy, lives, table } = await cluster(t)
  const key = Array.from({ length: 40 }, (_, i) => `idle${i}`).find((k) => table.pick(k)!.id === 'live-b')!
  const socket = connect({ host: '127.0.0.1', port: proxy.port })
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  // One exchange with live-b, then the connection stays open and idle.
  socket.write(`GET /first HTTP/1.1\r\nHost: ${HOST}\r\nCookie: espra_session=${key}\r\n\r\n`)
  let text = ''
  // Buffers, not a string encoding: the socket goes on to node:http's parser below.
  const onData = (d: Buffer) => (text += d.toString('latin1'))
  socket.on('data', onData)
  await waitFor('the first answer', () => /\r\n\r\n\{.*\}$/s.test(text))
  t.match(text, /"id":"live-b"/)
  socket.off('data', onData)

  await lives[1]!.request('deregister', {})
  lives[1]!.stopHeartbeat()
  await waitForTable(proxy, ['live-a'])

  // The same connection upgrades to a WebSocket on live-a: nothing of live-b's leaving may follow it there.
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws`, { headers: { host: HOST, cookie: `espra_session=${key}` }, createConnection: () => socket })
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  for (const word of ['one', 'two']) {
    const next = Promise.race([nextMessage(ws), closed.then((code) => `closed ${code}`)])
    ws.send(word)
    t.equal(await next, `live-a:${word}`, `${word}: echoed by live-a, not closed with 1012`)
  }
  ws.close()
})

t.test('a Live node joining: only the long-lived clients whose keys it now owns move to it', async (t) => {
  const { proxy, metaPort } = await cluster(t, { 'rebalance-spread': '300ms' }, ['live-a'])
  const both = new Rendezvous([{ id: 'live-a' }, { id: 'live-b' }])
  const keys = Array.from({ length: 60 }, (_, i) => `j${i}`)
  const moving = keys.filter((k) => both.pick(k)!.id === 'live-b').slice(0, 2)
  const staying = keys.filter((k) => both.pick(k)!.id === 'live-a').slice(0, 2)
  const sockets = new Map<string, WebSocket>()
  const closes = new Map<string, Promise<{ code: number; reason: string }>>()
  for (const key of [...moving, ...staying]) {
    const ws = await openWs(proxy.port, '/ws', key)
    sockets.set(key, ws)
    closes.set(key, new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) }))))
  }
  const sse = await openSse(proxy.port, moving[0]!)
  await waitFor('sse from live-a', () => sse.events.join('').includes('hello from live-a'))

  const b = await startBackend(t, 'live-b')
  await nodeClient(t, metaPort, 'live-b', { role: 'live', port: b.port, address: '127.0.0.1' })
  await waitForTable(proxy, ['live-a', 'live-b'])

  for (const key of moving) t.match(await closes.get(key), { code: 1012, reason: /moved: reconnect/ }, `${key} told to reconnect`)
  await sse.ended
  t.ok(sse.res.complete, 'the SSE response whose key moved ended cleanly')
  for (const key of staying) {
    const ws = sockets.get(key)!
    const echoed = nextMessage(ws)
    ws.send('still here')
    t.equal(await echoed, 'live-a:still here', `${key} stays on live-a`)
    ws.close()
  }
  const again = await openWs(proxy.port, '/ws', moving[0])
  const answer = nextMessage(again)
  again.send('hello')
  t.equal(await answer, 'live-b:hello', 'the reconnect lands on the new node')
  again.close()
})

t.test('no routing table, or no Live node: 503 with a clear code', async (t) => {
  // The seed address is one nobody listens on: no table ever arrives.
  const lonely = await startNode(t, 'proxy', { children: 1 })
  const none = await send(lonely.port, {})
  t.equal(none.status, 503)
  t.match(JSON.parse(none.body), { code: 'ESPRA_ERR_PROXY_NO_ROUTING_TABLE' })

  const { proxy } = await cluster(t, {}, [])
  const empty = await send(proxy.port, {})
  t.equal(empty.status, 503)
  t.match(JSON.parse(empty.body), { code: 'ESPRA_ERR_PROXY_NO_LIVE_NODE' })
})
