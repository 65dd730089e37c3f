/**
 * A proxy in front of stand-in Live nodes: a real seed, a real proxy node,
 * and plain node:http servers (with a WebSocket echo and an SSE stream)
 * registered with the seed as Live nodes. Everything stops at teardown.
 */
import { createServer, type Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import type { Test } from 'tap'
import { WebSocketServer } from 'ws'
import { Rendezvous } from '../../lib/routing/rendezvous.js'
import { freePort, health, startNode, waitFor, type StartedNode } from './cluster.js'
import { send as sendRequest, type HttpAnswer } from './http.js'
import { nodeClient } from './seed.js'

export const HOST = 'us-1.live.localhost'
export const FAST = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '1s', 'seed-grace': '200ms' }

export interface Backend {
  id: string
  port: number
  server: Server
  /** Requests that reached this backend. */
  hits: IncomingMessage[]
  connections: number
  /** Open SSE responses, to push events from the test. */
  streams: ServerResponse[]
  wss: WebSocketServer
}

/** The body `/bytes` answers: every byte value, then a blank line as a head would end. */
export const BYTES = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n\r\nHTTP/1.1 200 OK\r\n\r\n')])

/** A plain node:http server standing in for a Live node's HTTP endpoint. */
export async function startBackend(t: Test, id: string): Promise<Backend> {
  const port = await freePort()
  const backend: Backend = { id, port, hits: [], connections: 0, streams: [], server: undefined as unknown as Server, wss: new WebSocketServer({ noServer: true }) }
  // `/drop-once?...`: the first request for a URL gets its connection closed unanswered, like a kept-alive
  // connection the node closes as the request arrives; asked again, it is answered.
  const dropped = new Set<string>()
  backend.server = createServer((req, res) => {
    backend.hits.push(req)
    if (req.url?.startsWith('/drop-once') && !dropped.has(req.url)) {
      dropped.add(req.url)
      return void req.socket.destroy()
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => (body += d))
    req.on('end', () => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(`data: hello from ${id}\n\n`)
        backend.streams.push(res)
        return
      }
      if (req.url === '/bytes') {
        // Every byte value, and what looks like the end of a head, in a body framed by its length (also for HEAD).
        res.setHeader('content-length', BYTES.length)
        return void res.end(req.method === 'HEAD' ? undefined : BYTES)
      }
      if (req.url !== undefined && /^\/status\/[2-5]\d\d$/.test(req.url)) {
        res.statusCode = Number(req.url.slice(-3))
        return void res.end()
      }
      if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('one,')
        res.write('two,')
        res.end('three')
        return
      }
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id, method: req.method, url: req.url, body, headers: req.headers }))
    })
  })
  backend.server.on('connection', () => backend.connections++)
  backend.server.on('upgrade', (req, socket, head) => {
    backend.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data) => ws.send(`${id}:${String(data)}`))
    })
  })
  await new Promise<void>((resolve) => backend.server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const c of backend.wss.clients) c.terminate()
    backend.server.closeAllConnections()
    backend.server.close()
  })
  return backend
}

export type Answer = HttpAnswer

export function send(port: number, opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string | string[]; agent?: Agent | false }): Promise<Answer> {
  const headers = { host: HOST, ...opts.headers }
  return sendRequest({ host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', agent: opts.agent ?? false, headers }, opts.body)
}

/** Writes raw bytes and reads until the proxy closes the connection. */
export function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(bytes))
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (out += d))
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
  })
}

export const totalHits = (backends: Backend[]) => backends.reduce((n, b) => n + b.hits.length, 0)

export async function cluster(t: Test, proxyFlags: Record<string, string | number> = {}, liveIds = ['live-a', 'live-b']) {
  const metaPort = await freePort()
  const seed = `127.0.0.1:${metaPort}`
  // The stand-in Live nodes heartbeat from the test's own event loop, which TLS handshakes and child
  // processes can stall for a second on a busy machine: no test here waits for an eviction, so allow 5 s.
  await startNode(t, 'seed', { 'meta-port': metaPort, ...FAST, 'heartbeat-timeout': '5s' })
  const backends = await Promise.all(liveIds.map((id) => startBackend(t, id)))
  const lives = await Promise.all(backends.map((b) => nodeClient(t, metaPort, b.id, { role: 'live', port: b.port, address: '127.0.0.1' })))
  const proxy = await startNode(t, 'proxy', { seed, children: 2, ...FAST, ...proxyFlags })
  await waitForTable(proxy, liveIds)
  const table = new Rendezvous(liveIds.map((id) => ({ id })))
  return { proxy, backends, lives, table, metaPort }
}

export async function waitForTable(proxy: StartedNode, ids: string[]): Promise<void> {
  // Both children must have the table: the health answer of either one shows it.
  for (let i = 0; i < 6; i++) {
    await waitFor(`proxy routing table is ${ids.join(',')}`, async () => {
      const routing = (await health(proxy.port)).body['routing'] as { nodes: { id: string }[] } | undefined
      return routing !== undefined && routing.nodes.map((n) => n.id).sort().join(',') === [...ids].sort().join(',')
    })
  }
}
