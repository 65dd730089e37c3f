// Planned maintenance end to end, with real processes: a seed, a proxy (in front of a stand-in Live node), a
// fileserver and an app node, driven by the real `espra-node admin maintenance` CLI. Every proxy, fileserver and app
// node answers 503 with the page (HTML or JSON) while it is on, except health checks and allow-listed clients (the
// client named by X-Forwarded-For from the trusted 127.0.0.1); `--hosts` limits it; `off` and the expiry end it on
// every node; a restarted node, a node that joins later and a restarted seed all keep it. Needs `npm run build`.
import t from 'tap'
import { admin } from '../helpers/app-cluster.js'
import { freePort, health, startNode, waitFor, type StartedNode } from '../helpers/cluster.js'
import { send, type HttpAnswer } from '../helpers/http.js'
import { FAST, HOST, raw, startBackend } from '../helpers/proxy-cluster.js'
import { nodeClient } from '../helpers/seed.js'
import { testDir } from '../helpers/temp-dir.js'

// Nodes started again inside a subtest belong to the whole file: they must outlive that subtest's teardown.
const root = t
const OUTSIDER = '203.0.113.9'
const MESSAGE = 'Database upgrade: back soon <promise>'

const metaPort = await freePort()
const seedAddress = `127.0.0.1:${metaPort}`
const seedFlags = { 'meta-port': metaPort, port: await freePort(), 'metrics-port': await freePort(), 'data-dir': testDir('espra-maint-seed-'), ...FAST }
let seed = await startNode(t, 'seed', seedFlags)
const backend = await startBackend(t, 'live-a')
await nodeClient(t, metaPort, 'live-a', { role: 'live', port: backend.port, address: '127.0.0.1' })
const common = { seed: seedAddress, children: 1, 'trusted-proxies': '127.0.0.1', ...FAST }
const proxy = await startNode(t, 'proxy', { ...common, 'node-id': 'proxy-1' })
const fsFlags = { ...common, 'node-id': 'fs-1', port: await freePort(), 'metrics-port': await freePort(), 'data-dir': testDir('espra-maint-fs-') }
let fileserver = await startNode(t, 'fileserver', fsFlags)
const app = await startNode(t, 'app', { ...common, 'node-id': 'app-1' })
for (const node of [proxy, fileserver, app]) await waitFor('registered', async () => (await health(node.port)).body['seedConnected'] === true)
await waitFor('the proxy routes to live-a', async () => (await send({ host: '127.0.0.1', port: proxy.port, path: '/', headers: { host: HOST }, agent: false })).status === 200)

const maintenance = (...args: string[]) => admin(['maintenance', ...args, '--seed', seedAddress])

/** Who answers what: the proxy serves only the live host; the fileserver and app nodes any host. */
const targets = (): [string, StartedNode, string][] => [['proxy', proxy, HOST], ['fileserver', fileserver, 'files.example'], ['app', app, 'app.example']]

function get(node: StartedNode, host: string, headers: Record<string, string> = {}, path = '/x'): Promise<HttpAnswer> {
  return send({ host: '127.0.0.1', port: node.port, path, headers: { host, ...headers }, agent: false })
}
const fromOutside = (node: StartedNode, host: string, headers: Record<string, string> = {}) => get(node, host, { 'x-forwarded-for': OUTSIDER, ...headers })
const isPage = (a: HttpAnswer) => a.status === 503 && (a.body.includes('Down for maintenance') || a.body.includes('ESPRA_ERR_MAINTENANCE'))

async function everyNode(what: string, page: boolean): Promise<void> {
  for (const [name, node, host] of targets()) {
    await waitFor(`${name} ${what}`, async () => isPage(await fromOutside(node, host)) === page)
  }
}

t.test('on: every proxy, fileserver and app node answers the page, HTML or JSON; health checks and allowed clients pass', async (t) => {
  const on = await maintenance('on', '--until', '10m', '--message', MESSAGE, '--allow', '127.0.0.1/32,2001:db8::/32')
  t.equal(on.code, 0, on.stderr)
  t.match(on.stdout, /^maintenance: ON until \S+ \(\d+m( \d+s)? left\) for every host; allowed: 127\.0\.0\.1\/32, 2001:db8::\/32; message: "Database upgrade/)
  await everyNode('answers the page', true)
  for (const [name, node, host] of targets()) {
    const html = await fromOutside(node, host)
    t.equal(html.status, 503, `${name}: 503`)
    t.match(html.headers['content-type'], /^text\/html; charset=utf-8/, `${name}: HTML`)
    t.equal(html.headers['cache-control'], 'no-store', `${name}: no-store`)
    const retry = Number(html.headers['retry-after'])
    t.ok(retry >= 1 && retry <= 300, `${name}: Retry-After ${retry}, the time left capped at 5 min`)
    t.match(html.body, 'Database upgrade: back soon &lt;promise&gt;', `${name}: the message, escaped`)
    const json = await fromOutside(node, host, { accept: 'application/json' })
    t.equal(json.status, 503)
    t.match(json.headers['content-type'], /^application\/json/)
    t.match(JSON.parse(json.body), { code: 'ESPRA_ERR_MAINTENANCE', message: MESSAGE, until: /^\d{4}-\d\d-\d\dT/ }, `${name}: JSON`)
    const head = await send({ host: '127.0.0.1', port: node.port, path: '/x', method: 'HEAD', headers: { host, 'x-forwarded-for': OUTSIDER }, agent: false })
    t.equal(head.status, 503, `${name}: HEAD too`)
    t.equal(head.body, '', `${name}: HEAD has no body`)
    t.equal((await health(node.port)).status, 200, `${name}: health checks still 200`)
    t.notOk(isPage(await get(node, host)), `${name}: 127.0.0.1 (allowed) is served`)
    t.notOk(isPage(await fromOutside(node, host, { 'x-forwarded-for': '2001:db8::5' })), `${name}: an allowed IPv6 client is served`)
  }
  const proxied = await get(proxy, HOST)
  t.equal(JSON.parse(proxied.body).id, 'live-a', 'the allowed client reaches the Live node through the proxy')

  // A WebSocket upgrade through the proxy gets the 503 and the connection closes.
  const ws = await raw(proxy.port, `GET /ws HTTP/1.1\r\nHost: ${HOST}\r\nX-Forwarded-For: ${OUTSIDER}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  t.match(ws, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
  t.match(ws, /\r\nConnection: close\r\n/)

  const status = await admin(['status', '--seed', seedAddress])
  t.match(status.stdout, /\nmaintenance: ON until .* for every host/, 'admin status shows it')
  const shown = await maintenance('status', '--json')
  t.match(JSON.parse(shown.stdout), { message: MESSAGE, hosts: null, allow: ['127.0.0.1/32', '2001:db8::/32'] })
})

t.test('--hosts: only those hosts; off restores every node at once', async (t) => {
  const on = await maintenance('on', '--until', '10m', '--hosts', 'a.example', '--hosts', HOST)
  t.equal(on.code, 0, on.stderr)
  await waitFor('fileserver: a.example under maintenance', async () => isPage(await fromOutside(fileserver, 'a.example')))
  await waitFor('fileserver: files.example served again', async () => !isPage(await fromOutside(fileserver, 'files.example')))
  t.ok(isPage(await fromOutside(app, 'a.example:8082')), 'app: a.example (any port)')
  t.notOk(isPage(await fromOutside(app, 'b.example')), 'app: b.example served')
  t.ok(isPage(await fromOutside(proxy, HOST)), 'proxy: the live host is named')
  t.ok(isPage(await get(proxy, HOST)), 'no allow list this time: 127.0.0.1 gets the page too')
  const off = await maintenance('off')
  t.equal(off.code, 0, off.stderr)
  t.match(off.stdout, /^maintenance: off \(told \d+ nodes\)/)
  await everyNode('serves again', false)
  t.notOk(isPage(await fromOutside(fileserver, 'a.example')))
  t.equal((await maintenance()).stdout, 'maintenance: off\n', '`admin maintenance` alone prints the state')
})

t.test('a restarted node and a node that joins later keep it', async (t) => {
  t.equal((await maintenance('on', '--until', '10m')).code, 0)
  await everyNode('answers the page', true)
  await fileserver.stop()
  fileserver = await startNode(root, 'fileserver', fsFlags)
  t.ok(isPage(await fromOutside(fileserver, 'files.example')), 'the restarted fileserver answers the page from its first request')
  const late = await startNode(t, 'app', { ...common, 'node-id': 'app-late' })
  await waitFor('the late app node hears it on register', async () => isPage(await fromOutside(late, 'app.example')))
  t.pass('the late node answers the page')
  await late.stop()
})

t.test('a restarted seed keeps it, and off still reaches every node', async (t) => {
  seed.proc.kill('SIGKILL')
  await seed.exited
  seed = await startNode(root, 'seed', seedFlags)
  const shown = await maintenance('status')
  t.match(shown.stdout, /^maintenance: ON until/, 'the seed kept it')
  await everyNode('still answers the page', true)
  for (const node of [proxy, fileserver, app]) await waitFor('registered again', async () => (await health(node.port)).body['seedConnected'] === true)
  t.equal((await maintenance('off')).code, 0)
  await everyNode('serves again', false)
})

t.test('it ends by itself at --until: by the seed, and by each node\'s clock while the seed is down', async (t) => {
  t.equal((await maintenance('on', '--until', '3s')).code, 0)
  await everyNode('answers the page', true)
  await everyNode('serves again at its time', false)
  await seed.waitForLog((l) => l.msg === 'maintenance over: its time is up', 'the seed ended it')
  t.equal((await maintenance()).stdout, 'maintenance: off\n')

  // Cut off from the seed: the nodes end it on their own, and the seed drops it when it starts again.
  t.equal((await maintenance('on', '--until', '3s')).code, 0)
  await everyNode('answers the page', true)
  seed.proc.kill('SIGKILL')
  await seed.exited
  await everyNode('serves again with no seed', false)
  seed = await startNode(root, 'seed', seedFlags)
  await seed.waitForLog((l) => l.msg === 'maintenance ended while the seed was down: dropped', 'dropped at load')
  t.equal((await maintenance()).stdout, 'maintenance: off\n')
})

t.test('hostile input is refused before anything is sent (exit 2, one line naming the flag)', async (t) => {
  const cases: [string[], RegExp][] = [
    [['on'], /--until: is required/],
    [['on', '--until', '2020-01-01T00:00Z'], /--until: "2020-01-01T00:00Z" is in the past/],
    [['on', '--until', '8d'], /--until: "8d" is more than 7 days away/],
    [['on', '--until', '2099-01-01T00:00'], /needs a date, a time and a zone/],
    [['on', '--until', '1h', '--allow', '10.0.0.0/33'], /--allow: '10\.0\.0\.0\/33': the prefix length must be 0 to 32/],
    [['on', '--until', '1h', '--allow', 'fd00::/200'], /--allow: 'fd00::\/200': the prefix length must be 0 to 128/],
    [['on', '--until', '1h', '--hosts', 'bad_host'], /--hosts: "bad_host": label/],
    [['on', '--until', '1h', '--message', 'x'.repeat(1001)], /--message: must be at most 1000 characters \(got 1001\)/],
  ]
  for (const [args, message] of cases) {
    const run = await maintenance(...args)
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, message, args.join(' '))
    t.equal(run.stderr.trim().split('\n').length, 1, 'one line')
  }
  t.equal((await maintenance()).stdout, 'maintenance: off\n', 'nothing was set')
})
