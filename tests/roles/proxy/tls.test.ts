// TLS termination at the proxy: HTTPS and wss to stand-in Live nodes, X-Forwarded-Proto https,
// the 308 redirect from plain HTTP, and the start-up errors for bad certificate or key files.
import { execFileSync } from 'node:child_process'
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { RequestOptions } from 'node:http'
import { request } from 'node:https'
import { connect as tcpConnect, createServer, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { join } from 'node:path'
import t from 'tap'
import { WebSocket, type ClientOptions } from 'ws'
import { freePort, pidAlive, startNode, waitFor } from '../../helpers/cluster.js'
import { send as sendRequest, type HttpAnswer } from '../../helpers/http.js'
import { cluster, HOST, send } from '../../helpers/proxy-cluster.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

const dir = testDir('espra-tls-test-')
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/** A self-signed certificate for the live host, made with Debian's openssl. */
function selfSigned(name: string): { cert: string; key: string; pem: Buffer } {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`,
    '-days', '1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' })
  return { cert, key, pem: readFileSync(cert) }
}

const good = selfSigned('good')
const other = selfSigned('other')


function httpsGet(port: number, path: string, headers: Record<string, string> = {}, ca: Buffer = good.pem): Promise<HttpAnswer> {
  return sendRequest({ host: '127.0.0.1', port, path, servername: HOST, ca, agent: false, headers: { host: HOST, ...headers } } as RequestOptions, undefined, request)
}

t.test('HTTPS and wss through the proxy reach the Live node with X-Forwarded-Proto https', async (t) => {
  const tlsPort = await freePort()
  const { proxy } = await cluster(t, { 'tls-cert': good.cert, 'tls-key': good.key, 'tls-port': tlsPort }, ['live-a'])

  const secure = await httpsGet(tlsPort, '/hello?x=1')
  t.equal(secure.status, 200)
  const echoed = JSON.parse(secure.body)
  t.equal(echoed.id, 'live-a')
  t.equal(echoed.url, '/hello?x=1')
  t.equal(echoed.headers['x-forwarded-proto'], 'https')
  t.equal(echoed.headers['x-forwarded-for'], '127.0.0.1')

  const health = await httpsGet(tlsPort, '/_espra/health')
  t.equal(health.status, 200, 'health answers over TLS too')

  const plain = JSON.parse((await send(proxy.port, {})).body)
  t.equal(plain.headers['x-forwarded-proto'], 'http', 'the plain port still serves, and says http')

  // servername is passed on to tls.connect (ws's types leave it out): the certificate names the live host, not 127.0.0.1.
  const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/ws`, { ca: good.pem, servername: HOST, headers: { host: HOST } } as ClientOptions)
  t.teardown(() => ws.terminate())
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  for (let i = 0; i < 3; i++) {
    const answer = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))
    ws.send(`ping ${i}`)
    t.equal(await answer, `live-a:ping ${i}`)
  }
  ws.close()
})

t.test('--https-redirect: plain HTTP for the live host gets 308 to https, health and other hosts do not', async (t) => {
  const tlsPort = await freePort()
  const { proxy, backends } = await cluster(t, { 'tls-cert': good.cert, 'tls-key': good.key, 'tls-port': tlsPort, 'https-redirect': 'true' }, ['live-a'])

  const moved = await send(proxy.port, { path: '/ch/a?since=3' })
  t.equal(moved.status, 308)
  t.equal(moved.headers['location'], `https://${HOST}:${tlsPort}/ch/a?since=3`)
  const withBody = await send(proxy.port, { method: 'POST', path: '/publish', body: 'x'.repeat(1000), headers: { 'content-length': '1000' } })
  t.equal(withBody.status, 308, 'a request with a body is redirected too (and its connection closed)')
  t.equal((await send(proxy.port, { path: '/_espra/health' })).status, 200, 'health checks are not redirected')
  t.equal((await send(proxy.port, { headers: { host: 'example.com' } })).status, 404, 'other hosts still get 404')
  t.equal(backends[0]!.hits.length, 0, 'nothing plain reached the Live node')

  const secure = await httpsGet(tlsPort, '/ch/a')
  t.equal(secure.status, 200, 'HTTPS is served, not redirected')
  t.equal(JSON.parse(secure.body).headers['x-forwarded-proto'], 'https')
})

t.test('SIGHUP: new children read renewed certificate files', async (t) => {
  const cert = join(dir, 'live.crt')
  const key = join(dir, 'live.key')
  copyFileSync(good.cert, cert)
  copyFileSync(good.key, key)
  const tlsPort = await freePort()
  const { proxy } = await cluster(t, { 'tls-cert': cert, 'tls-key': key, 'tls-port': tlsPort }, ['live-a'])
  t.equal((await httpsGet(tlsPort, '/')).status, 200, 'served with the first certificate')

  const before = proxy.childPids()
  copyFileSync(other.cert, cert)
  copyFileSync(other.key, key)
  proxy.proc.kill('SIGHUP')
  // Once the old children are gone, every connection lands on a child started after the renewal.
  await waitFor('both children replaced and the old ones gone', () => proxy.logs.filter((l) => /^child \d+ replaced/.test(l.msg)).length === 2 && before.every((pid) => !pidAlive(pid)), 60_000)
  for (let i = 0; i < 4; i++) t.equal((await httpsGet(tlsPort, '/', {}, other.pem)).status, 200, `connection ${i}: the renewed certificate`)
  await t.rejects(httpsGet(tlsPort, '/', {}, good.pem), 'the old certificate is no longer served')
})

t.test('bad TLS options stop the node at start with one line naming the option', async (t) => {
  const env = { ...process.env, ESPRA_SECRET: 'y'.repeat(32) }
  const garbage = join(dir, 'garbage.pem')
  writeFileSync(garbage, 'not a certificate\n')
  const port = String(await freePort())
  const cases: [string[], RegExp][] = [
    [[`--tls-cert=${join(dir, 'missing.crt')}`, `--tls-key=${good.key}`], /^espra-node: --tls-cert: cannot read .*missing\.crt \(ENOENT\)\n$/],
    [[`--tls-cert=${good.cert}`, `--tls-key=${join(dir, 'missing.key')}`], /^espra-node: --tls-key: cannot read .*missing\.key \(ENOENT\)\n$/],
    [[`--tls-cert=${dir}`, `--tls-key=${good.key}`], /^espra-node: --tls-cert: cannot read .* \(EISDIR\)\n$/],
    [[`--tls-cert=${garbage}`, `--tls-key=${good.key}`], /^espra-node: --tls-cert: .*garbage\.pem holds no PEM certificate\n$/],
    [[`--tls-cert=${good.cert}`, `--tls-key=${garbage}`], /^espra-node: --tls-key: .*garbage\.pem holds no unencrypted PEM private key\n$/],
    [[`--tls-cert=${good.cert}`, `--tls-key=${other.key}`], /^espra-node: --tls-key: .*other\.key is not the key of the certificate in .*good\.crt\n$/],
    [[`--tls-cert=${good.cert}`], /^espra-node: --tls-key: is required with --tls-cert\n$/],
    [[`--tls-key=${good.key}`], /^espra-node: --tls-cert: is required with --tls-key\n$/],
    [['--https-redirect=true'], /^espra-node: --https-redirect: needs TLS: set --tls-cert and --tls-key\n$/],
    [['--https-redirect=maybe'], /^espra-node: --https-redirect: must be true or false/],
    [[`--tls-cert=${good.cert}`, `--tls-key=${good.key}`, `--tls-port=${port}`], /^espra-node: --tls-port: must differ from --port/],
  ]
  for (const [args, message] of cases) {
    const r = await runCli(['--role=proxy', `--port=${port}`, ...args], { env })
    t.equal(r.code, 2, `${args.join(' ')} exits 2`)
    t.match(r.stderr, message)
  }
  const fromEnv = await runCli(['--role=proxy', `--port=${port}`], { env: { ...env, ESPRA_TLS_CERT: join(dir, 'missing.crt'), ESPRA_TLS_KEY: good.key } })
  t.equal(fromEnv.code, 2, 'the same from the environment')
  t.match(fromEnv.stderr, /^espra-node: --tls-cert: cannot read/)
})

t.test('a --tls-port already in use stops the node at start with one line naming the option', async (t) => {
  // Before: the node started, health ok, and each child served TLS on 0.0.0.0:<random port>.
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve))
  t.teardown(() => holder.close())
  const tlsPort = (holder.address() as { port: number }).port
  const node = await startNode(t, 'proxy', { 'tls-cert': good.cert, 'tls-key': good.key, 'tls-port': tlsPort }, { noWait: true })
  const exit = await Promise.race([node.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000).unref())])
  t.equal(exit?.code, 1, 'exit 1')
  t.equal(node.stderr(), `espra-node: ESPRA_ERR_NODE_LISTEN: --tls-port: cannot listen on 127.0.0.1:${tlsPort} (EADDRINUSE); is another node running?\n`)
})

/** Resolves true when the server closes `socket`, false if it is still open after 30 s (the head deadline is 10 s). */
function closedByServer(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, 30_000)
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

t.test('TLS connections are counted per address from the accept and held to the head deadline like plain ones', async (t) => {
  const tlsPort = await freePort()
  const { proxy } = await cluster(t, { children: 1, 'max-conns-per-address': 3, 'tls-cert': good.cert, 'tls-key': good.key, 'tls-port': tlsPort }, ['live-a'])
  // Before: a TLS connection counted only once its handshake was done, so silent ones were never limited.
  const silent = await Promise.all([0, 1, 2].map(() => new Promise<Socket>((resolve) => {
    const s: Socket = tcpConnect({ host: '127.0.0.1', port: tlsPort }, () => resolve(s))
  })))
  await waitFor('three silent TLS connections count against the limit', async () => (await send(proxy.port, {})).status === 429)
  for (const s of silent) s.destroy()
  await waitFor('the count goes down again', async () => (await send(proxy.port, {})).status === 200)

  // Before: a silent or half-started TLS connection stayed 300 s, a handshake without a request 75 s, a silent plain one 75 s.
  const quiet = tcpConnect({ host: '127.0.0.1', port: tlsPort })
  const partial = tcpConnect({ host: '127.0.0.1', port: tlsPort }, () => partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])))
  const handshaken = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: HOST, ca: good.pem })
  await new Promise<void>((resolve, reject) => handshaken.once('secureConnect', resolve).once('error', reject))
  const plain = tcpConnect({ host: '127.0.0.1', port: proxy.port })
  const [a, b, c, d] = await Promise.all([quiet, partial, handshaken, plain].map(closedByServer))
  t.ok(a, 'a silent connection to the TLS port is closed at the head deadline')
  t.ok(b, 'a partial ClientHello is closed at the head deadline')
  t.ok(c, 'a handshake with no request after it is closed at the head deadline')
  t.ok(d, 'a silent plain connection is closed at the head deadline')
})
