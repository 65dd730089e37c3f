// The real client behind a load balancer: from a peer in --trusted-proxies, a PROXY v2 header or X-Forwarded-For
// names the client for the `ip` routing key, the per-address limits and the X-Forwarded-For a Live node gets;
// from any other peer they are not believed. Real seed and proxy, stand-in Live nodes.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { RequestOptions } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { PROXY_V2_SIGNATURE } from '../../../lib/core/client-address.js'
import { freePort, waitFor } from '../../helpers/cluster.js'
import { send as sendRequest } from '../../helpers/http.js'
import { cluster, HOST, send } from '../../helpers/proxy-cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

/** A PROXY v2 header (PROXY command, TCP over IPv4) naming `source` as the client. */
function proxyV2(source: string): Buffer {
  const fixed = Buffer.from([0x21, 0x11, 0x00, 12])
  const addresses = Buffer.from([...source.split('.').map(Number), 127, 0, 0, 1, 0xc3, 0x50, 0x1f, 0x90])
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, addresses])
}

/** Writes `bytes` from `localAddress` and reads until the proxy closes. */
function rawFrom(port: number, bytes: Buffer | string, localAddress = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => socket.write(bytes))
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (out += d))
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
  })
}

const request = (path = '/') => `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`
const body = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { id: string; headers: Record<string, string> }

t.test('from a trusted balancer: X-Forwarded-For and PROXY v2 name the client; from others they do not', async (t) => {
  const { proxy, table } = await cluster(t, { children: 1, 'trusted-proxies': '127.0.0.1', 'max-conns-per-address': 2 })
  const owner = (key: string) => table.pick(key)!.id
  const clients = Array.from({ length: 12 }, (_, i) => `198.51.100.${i + 1}`)
  t.ok(new Set(clients.map(owner)).size === 2, 'the client addresses spread over both nodes')

  for (const client of clients) {
    const echoed = JSON.parse((await send(proxy.port, { headers: { 'x-forwarded-for': `10.9.9.9, ${client}` } })).body)
    t.equal(echoed.id, owner(client), `X-Forwarded-For ${client}: routed by the client's address`)
    t.equal(echoed.headers['x-forwarded-for'], `10.9.9.9, ${client}, 127.0.0.1`, 'the chain is passed on, the balancer added')
  }

  for (const client of clients) {
    const echoed = body(await rawFrom(proxy.port, Buffer.concat([proxyV2(client), Buffer.from(request())])))
    t.equal(echoed.id, owner(client), `PROXY v2 ${client}: routed by the client's address`)
    t.equal(echoed.headers['x-forwarded-for'], client, 'the Live node gets the client in X-Forwarded-For')
  }
  // The header and the request in separate writes (an NLB sends them as they come).
  const split = await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: proxy.port }, () => {
      const header = proxyV2('203.0.113.44')
      socket.write(header.subarray(0, 10))
      setTimeout(() => socket.write(Buffer.concat([header.subarray(10), Buffer.from(request())])), 50)
    })
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (out += d))
    socket.on('close', () => resolve(out))
  })
  t.equal(body(split).headers['x-forwarded-for'], '203.0.113.44', 'a header split over reads')

  // --max-conns-per-address 2 counts PROXY v2 clients, not the balancer: three held connections of three clients pass.
  const held = await Promise.all(['203.0.113.1', '203.0.113.2', '203.0.113.3'].map((source) => new Promise<ReturnType<typeof connect>>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: proxy.port }, () => {
      s.write(proxyV2(source))
      resolve(s)
    })
  })))
  const fourth = await rawFrom(proxy.port, Buffer.concat([proxyV2('203.0.113.9'), Buffer.from(request())]))
  t.match(fourth, /^HTTP\/1\.1 200 /, 'a fourth client through the same balancer is served')
  const sameClient = await Promise.all([0, 1].map(() => new Promise<ReturnType<typeof connect>>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: proxy.port }, () => {
      s.write(proxyV2('203.0.113.1'))
      resolve(s)
    })
  })))
  // Three connections of 203.0.113.1 now: one of the two just opened is over the limit (which one depends on the read order).
  const answers = await Promise.all(sameClient.map((s) => new Promise<string>((resolve) => {
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => (out += d))
    s.on('close', () => resolve(out))
    setTimeout(() => s.write(request()), 100)
  })))
  t.ok(answers.some((a) => /^HTTP\/1\.1 429 [\s\S]*ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS/.test(a)), 'one client over its limit behind the balancer gets 429')
  for (const s of [...held, ...sameClient]) s.destroy()

  // 127.0.0.2 is not trusted: its PROXY header is not read (a request cannot start so: 400) and its X-Forwarded-For names no one.
  const untrustedHeader = await rawFrom(proxy.port, Buffer.concat([proxyV2('203.0.113.7'), Buffer.from(request())]), '127.0.0.2')
  t.match(untrustedHeader, /^HTTP\/1\.1 400 /, 'a PROXY header from an untrusted peer is refused')
  for (const client of clients.slice(0, 4)) {
    const answer = await rawFrom(proxy.port, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Forwarded-For: ${client}\r\nConnection: close\r\n\r\n`, '127.0.0.2')
    t.equal(body(answer).id, owner('127.0.0.2'), `an untrusted peer claiming ${client} is routed by its own address`)
    t.equal(body(answer).headers['x-forwarded-for'], `${client}, 127.0.0.2`)
  }
})

/** Runs haproxy (Debian's) with `config` until teardown; resolves once it listens on `port`. */
async function startHaproxy(t: Test, config: string, port: number): Promise<void> {
  const dir = testDir('espra-haproxy-')
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, config)
  const proc = spawn('haproxy', ['-f', file, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(() => {
    proc.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  await waitFor('haproxy listens', () => new Promise<boolean>((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  }))
}

// HAProxy is installed by tests/system-packages.sh (npm run test:fresh); without it this test fails, it does not skip.
t.test('through a real HAProxy, both ways infra/haproxy/haproxy.cfg shows: X-Forwarded-For and send-proxy-v2 (plain and TLS ports)', async (t) => {
  t.equal(spawnSync('haproxy', ['-v']).status, 0, 'haproxy is installed (npm run test:fresh installs it)')
  const dir = testDir('espra-client-address-')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cert = join(dir, 'live.crt')
  const key = join(dir, 'live.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`, '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  const tlsPort = await freePort()
  const { proxy, table } = await cluster(t, { children: 1, 'trusted-proxies': '127.0.0.1', 'tls-cert': cert, 'tls-key': key, 'tls-port': tlsPort })
  const [httpPort, tcpPort, tlsTcpPort] = [await freePort(), await freePort(), await freePort()]
  const common = ['global', '  maxconn 1000', 'defaults', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s']
  await startHaproxy(t, [
    ...common,
    'frontend live', '  mode http', `  bind 127.0.0.1:${httpPort}`, '  default_backend espra_proxies',
    'backend espra_proxies', '  mode http', '  http-reuse always', '  option forwardfor', `  server proxy1 127.0.0.1:${proxy.port}`,
    'frontend live_tcp', '  mode tcp', `  bind 127.0.0.1:${tcpPort}`, '  default_backend espra_proxies_tcp',
    'backend espra_proxies_tcp', '  mode tcp', `  server proxy1 127.0.0.1:${proxy.port} send-proxy-v2`,
    'frontend live_tls', '  mode tcp', `  bind 127.0.0.1:${tlsTcpPort}`, '  default_backend espra_proxies_tls',
    'backend espra_proxies_tls', '  mode tcp', `  server proxy1 127.0.0.1:${tlsPort} send-proxy-v2`,
    '',
  ].join('\n'), tlsTcpPort)
  // The client connects from 127.0.0.2 (loopback too): HAProxy itself is 127.0.0.1, the trusted peer.
  for (const [how, port] of [['X-Forwarded-For', httpPort], ['PROXY v2', tcpPort]] as const) {
    const answer = body(await rawFrom(port, request(), '127.0.0.2'))
    t.equal(answer.id, table.pick('127.0.0.2')!.id, `${how}: routed by the client's address`)
    t.match(answer.headers['x-forwarded-for'], /^127\.0\.0\.2(, 127\.0\.0\.1)?$/, `${how}: the Live node learns the client`)
  }

  // TLS passed through in TCP mode: the PROXY v2 header comes before the ClientHello.
  const https = (port: number) => sendRequest({ host: '127.0.0.1', port, path: '/', localAddress: '127.0.0.2', servername: HOST, ca: readFileSync(cert), agent: false, headers: { host: HOST } } as RequestOptions, undefined, httpsRequest)
  const secure = JSON.parse((await https(tlsTcpPort)).body) as { id: string; headers: Record<string, string> }
  t.equal(secure.id, table.pick('127.0.0.2')!.id, 'PROXY v2 on the TLS port: routed by the client\'s address')
  t.equal(secure.headers['x-forwarded-for'], '127.0.0.2', 'PROXY v2 on the TLS port: the Live node learns the client')
  t.equal(secure.headers['x-forwarded-proto'], 'https')
  const direct = await sendRequest({ host: '127.0.0.1', port: tlsPort, path: '/', servername: HOST, ca: readFileSync(cert), agent: false, headers: { host: HOST } } as RequestOptions, undefined, httpsRequest)
  t.equal(direct.status, 200, 'a trusted peer without a PROXY header is served over TLS too')
})
