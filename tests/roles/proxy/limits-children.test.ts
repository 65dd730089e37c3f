// The proxy's per-address limits hold for the node, not per child (roles/proxy/node-limits.ts, limits-parent.ts,
// limits-client.ts), through a real proxy with 2 children: connections from 127.0.0.1 held on both children count
// together, so once the node holds --max-conns-per-address the next connection is refused 429 whichever child takes
// it (each child alone holds fewer), and it is let in again once some close; a request taken by one child empties the
// address's node-wide bucket, so a request on a connection the other child serves is refused 429 although that
// child's own bucket is full. The parent's gauges say what it counts; the test waits for them, never for a time.
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { waitFor, type StartedNode } from '../../helpers/cluster.js'
import { cluster, HOST, raw } from '../../helpers/proxy-cluster.js'
import { scrape } from '../../helpers/prom-text.js'

const ONE = `GET /x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`

/** Open client connections per child index. */
async function perChild(proxy: StartedNode): Promise<Map<string, number>> {
  return new Map((await scrape(proxy.metricsPort)).find('espra_proxy_client_connections').map((s) => [s.labels['child']!, s.value]))
}

const parentValue = async (proxy: StartedNode, name: string, labels: Record<string, string> = {}): Promise<number> =>
  (await scrape(proxy.metricsPort)).find(name, labels).reduce((n, s) => n + s.value, 0)

/** Opens a connection and waits until some child counts it; answers the socket and that child's index. */
async function hold(proxy: StartedNode): Promise<{ socket: Socket; child: string }> {
  const before = await perChild(proxy)
  const socket = await new Promise<Socket>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: proxy.port }, () => resolve(s))
  })
  socket.setEncoding('latin1')
  socket.on('error', () => {})
  const child = await waitFor('a child counts the connection', async () => {
    const now = await perChild(proxy)
    return [...now].find(([c, n]) => n > (before.get(c) ?? 0))?.[0]
  })
  return { socket, child }
}

/** Writes one request on a held connection and reads until the answer's body (or the close). */
function ask(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let out = ''
    const done = (): void => {
      socket.off('data', onData)
      resolve(out)
    }
    const onData = (d: string): void => {
      out += d
      if (/\r\n\r\n/.test(out) && (/content-length: 0\r\n/i.test(out) || /\}$/.test(out))) done()
    }
    socket.on('data', onData)
    socket.once('close', done)
    socket.write(ONE)
  })
}

t.test('connections from one address count once for the node, whichever child holds them', async (t) => {
  const { proxy } = await cluster(t, { children: 2, 'max-conns-per-address': 4 }, ['live-a'])
  const held: { socket: Socket; child: string }[] = []
  t.teardown(() => held.forEach((h) => h.socket.destroy()))
  // Four held connections, two on each child (a third on one child is closed and another opened): neither holds four.
  for (let tries = 0; held.length < 4 && tries < 60; tries++) {
    const h = await hold(proxy)
    if (held.filter((x) => x.child === h.child).length < 2) {
      held.push(h)
      continue
    }
    const before = (await perChild(proxy)).get(h.child)!
    h.socket.destroy()
    await waitFor('the extra connection closed', async () => ((await perChild(proxy)).get(h.child) ?? 0) < before)
  }
  t.same(held.map((h) => h.child).sort(), ['0', '0', '1', '1'], 'two on each child')
  await waitFor('the parent counts four and blocks the address', async () =>
    (await parentValue(proxy, 'espra_proxy_limit_connections')) === 4 && (await parentValue(proxy, 'espra_proxy_limit_blocked_addresses', { limit: 'connections' })) === 1)

  // Every further connection is refused, on either child.
  const answers = await Promise.all(Array.from({ length: 6 }, () => raw(proxy.port, ONE)))
  for (const a of answers) t.match(a, /^HTTP\/1\.1 429 [\s\S]*ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS/, 'refused for the node')

  // Two close: the address is let in again.
  held.splice(0, 2).forEach((h) => h.socket.destroy())
  await waitFor('the parent counts two and unblocks', async () =>
    (await parentValue(proxy, 'espra_proxy_limit_connections')) === 2 && (await parentValue(proxy, 'espra_proxy_limit_blocked_addresses', { limit: 'connections' })) === 0)
  t.match(await raw(proxy.port, ONE.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')), /^HTTP\/1\.1 200 /, 'let in again below the limit')
})

t.test('requests per second from one address draw on one bucket for the node', async (t) => {
  // A rate of 1: one request empties the address's bucket for a second, on every child.
  const { proxy, backends } = await cluster(t, { children: 2, 'max-rps-per-address': 1 }, ['live-a'])
  const held: { socket: Socket; child: string }[] = []
  t.teardown(() => held.forEach((h) => h.socket.destroy()))
  // One connection on each child.
  while (new Set(held.map((h) => h.child)).size < 2) held.push(await hold(proxy))
  const a = held[0]!
  const b = held.find((h) => h.child !== a.child)!
  t.match(await ask(a.socket), /^HTTP\/1\.1 200 /, 'the first request passes')
  await waitFor('the parent blocks the address', async () => (await parentValue(proxy, 'espra_proxy_limit_blocked_addresses', { limit: 'requests' })) === 1)
  t.match(await ask(b.socket), /^HTTP\/1\.1 429 [\s\S]*ESPRA_ERR_PROXY_TOO_MANY_REQUESTS/, 'the other child refuses it, its own bucket full')
  t.equal(backends[0]!.hits.length, 1, 'only the first reached the Live node')
})
