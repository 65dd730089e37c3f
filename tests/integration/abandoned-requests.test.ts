// Regression (issue 10, item 1): a client that hangs up before its answer must never cost a child.
// `espra-node up` runs one node of every role with the sample app; every HTTP endpoint of every
// role (and the Live endpoints again through the proxy, with the token the sample app gives any
// visitor) is hit over raw sockets that hang up before the head ends, in the middle of a body,
// while the answer is pending, and with two pipelined requests (uWS closes a connection whose
// next request arrives while an answer is pending, which aborts the first one). Then every
// node must still be `ok`, count no child crash, and run the same child processes as before.
import { connect } from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { send } from '../helpers/http.js'
import { childPids, startUp, waitFor } from '../helpers/up.js'
import type { RoleName } from '../../lib/core/config.js'

const LIVE_HOST = 'us-1.live.localhost'

interface Target {
  readonly name: string
  readonly port: number
  readonly method: string
  readonly path: string
  readonly headers?: Record<string, string>
  /** Bytes the request carries (Content-Length is set from it). */
  readonly body?: string
}

function head(target: Target, bodyLength: number | null): string {
  const lines = [`${target.method} ${target.path} HTTP/1.1`, `Host: ${target.headers?.['host'] ?? '127.0.0.1'}`]
  for (const [name, value] of Object.entries(target.headers ?? {})) if (name !== 'host') lines.push(`${name}: ${value}`)
  if (bodyLength !== null) lines.push(`Content-Length: ${bodyLength}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

const whole = (target: Target): string => head(target, target.body === undefined ? null : Buffer.byteLength(target.body)) + (target.body ?? '')

/** Writes `bytes`, optionally waits for the first answer bytes, then hangs up; resolves once the socket closed. */
function hangUp(port: number, bytes: string, waitForAnswer = false): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.on('error', () => {})
    socket.on('close', () => resolve())
    socket.write(bytes, () => {
      if (!waitForAnswer) return void socket.destroy()
      // Pipelined: the server closes the connection itself, or answers the first request; either way we are done.
      socket.once('data', () => socket.destroy())
    })
    socket.setTimeout(2000, () => socket.destroy())
  })
}

/** Every way of leaving a request unfinished, against one target. */
async function abandon(target: Target): Promise<void> {
  const full = whole(target)
  // Before the head ends.
  await hangUp(target.port, full.slice(0, Math.max(8, full.indexOf('\r\n\r\n') - 5)))
  // In the middle of a body that is longer than what is sent.
  await hangUp(target.port, head(target, 4096 + Buffer.byteLength(target.body ?? '')) + (target.body ?? '').slice(0, 10) + 'x'.repeat(100))
  // While the answer is pending: the whole request, then gone at once (a few times: the answer is often quick).
  await Promise.all([0, 1, 2, 3].map(() => hangUp(target.port, full)))
  // Two pipelined requests: uWS aborts the first when the second arrives before the first is answered.
  await Promise.all([0, 1].map(() => hangUp(target.port, full + full, true)))
}

async function json(port: number, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await send({ host: '127.0.0.1', port, method, path, agent: false, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers } }, body)
  return { status: answer.status, body: answer.body === '' ? {} : (JSON.parse(answer.body) as Record<string, unknown>) }
}

interface NodeEntry {
  role: RoleName
  port: number
  metricsPort: number
  pid: number
}

async function crashes(metricsPort: number): Promise<number> {
  const text = (await send({ host: '127.0.0.1', port: metricsPort, path: '/metrics', agent: false })).body
  return Number(/^espra_node_child_crashes_total\{process="parent"\} (\d+)$/m.exec(text)?.[1] ?? 'NaN')
}

async function healthWords(nodes: NodeEntry[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const n of nodes) out[n.role] = String((await json(n.port, 'GET', '/_espra/health')).body['health'])
  return out
}

t.test('requests abandoned at every stage, on every endpoint of every role, cost no child', async (t) => {
  const cluster = await startUp(t)
  const port = (role: RoleName): number => cluster.port(role)
  const nodes = (JSON.parse(readFileSync(join(cluster.dir, '.espra', 'cluster.json'), 'utf8')) as { nodes: NodeEntry[] }).nodes
  await waitFor('every node ok', async () => Object.values(await healthWords(nodes)).every((h) => h === 'ok'), 30_000)
  await waitFor('the proxy routes to the Live node', async () => {
    const routing = (await json(port('proxy'), 'GET', '/_espra/health')).body['routing'] as { nodes: unknown[] } | undefined
    return (routing?.nodes.length ?? 0) > 0
  })
  await waitFor('the sample app is served', async () => (await send({ host: '127.0.0.1', port: port('app'), path: '/', agent: false })).status === 200, 30_000)
  const before = new Map(nodes.map((n) => [n.role, childPids(n.pid).sort().join(',')]))

  // What any visitor gets from the sample app: a Live token for the chat (sub, pub, presence) and upload tokens.
  const session = await json(port('app'), 'POST', '/api/session', JSON.stringify({ name: 'Mallory' }))
  t.equal(session.status, 200, 'a session from the sample app')
  const { live, user, chat } = session.body as { live: string; user: string; chat: string }
  const uploadToken = async (): Promise<string> => (await json(port('app'), 'POST', `/api/upload-token?user=${user}`)).body['upload'] as string
  const tus = await send({
    host: '127.0.0.1', port: port('fileserver'), method: 'POST', path: '/uploads/', agent: false,
    headers: { 'tus-resumable': '1.0.0', 'upload-length': '1000', authorization: `Bearer ${await uploadToken()}` },
  })
  t.equal(tus.status, 201, 'a tus upload to resume')
  const tusPath = new URL(String(tus.headers['location']), 'http://x').pathname

  const bearer = { authorization: `Bearer ${live}` }
  const liveEndpoints = (p: number, host: string): Target[] => [
    { name: 'pub', port: p, method: 'POST', path: `/pub/${chat}`, headers: { host, ...bearer, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'x' }) },
    { name: 'history', port: p, method: 'GET', path: `/history/${chat}?limit=5`, headers: { host, ...bearer } },
    { name: 'presence', port: p, method: 'GET', path: `/presence/${chat}`, headers: { host, ...bearer } },
    { name: 'poll', port: p, method: 'GET', path: `/poll?ch=${chat}&token=${live}`, headers: { host } },
    { name: 'poll behind', port: p, method: 'GET', path: `/poll?ch=${chat}&since=1&token=${live}`, headers: { host } },
    { name: 'sse', port: p, method: 'GET', path: `/sse?ch=${chat}&token=${live}`, headers: { host } },
    {
      name: 'ws upgrade', port: p, method: 'GET', path: `/ws?token=${live}`,
      headers: { host, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' },
    },
    { name: 'health', port: p, method: 'GET', path: '/_espra/health', headers: { host } },
    { name: 'not found', port: p, method: 'GET', path: '/nowhere', headers: { host } },
  ]
  const targets: Target[] = [
    ...nodes.flatMap((n) => [
      { name: `${n.role} health`, port: n.port, method: 'GET', path: '/_espra/health' },
      { name: `${n.role} not found`, port: n.port, method: 'POST', path: '/nowhere', body: '{}' },
      { name: `${n.role} metrics`, port: n.metricsPort, method: 'GET', path: '/metrics' },
    ]),
    ...liveEndpoints(port('live'), '127.0.0.1').map((e) => ({ ...e, name: `live ${e.name}` })),
    ...liveEndpoints(port('proxy'), LIVE_HOST).map((e) => ({ ...e, name: `proxy → live ${e.name}` })),
    { name: 'fileserver app asset', port: port('fileserver'), method: 'GET', path: '/app/public/style.css' },
    { name: 'fileserver /f miss', port: port('fileserver'), method: 'GET', path: `/f/files/${'0'.repeat(64)}` },
    { name: 'fileserver vhost', port: port('fileserver'), method: 'GET', path: '/', headers: { host: 'vhost.example' } },
    { name: 'fileserver upload', port: port('fileserver'), method: 'POST', path: '/upload', headers: { authorization: `Bearer ${await uploadToken()}`, 'content-type': 'text/plain' }, body: 'hello' },
    { name: 'fileserver tus create', port: port('fileserver'), method: 'POST', path: '/uploads/', headers: { 'tus-resumable': '1.0.0', 'upload-length': '10', authorization: `Bearer ${await uploadToken()}` } },
    { name: 'fileserver tus head', port: port('fileserver'), method: 'HEAD', path: tusPath, headers: { 'tus-resumable': '1.0.0' } },
    {
      name: 'fileserver tus patch', port: port('fileserver'), method: 'PATCH', path: tusPath,
      headers: { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc',
    },
    { name: 'app page', port: port('app'), method: 'GET', path: '/' },
    { name: 'app session', port: port('app'), method: 'POST', path: '/api/session', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Eve' }) },
  ]

  for (const target of targets) {
    t.comment(target.name)
    await abandon(target)
    // A long-poll left waiting is answered (into a closed socket) by the next message on its channel.
    // (A child that crashed meanwhile is being restarted: the checks below wait for an answer, then count the crashes.)
    if (target.name.endsWith('poll')) await waitFor(`${target.name}: a message for the polls left behind`, async () => (await json(port('live'), 'POST', `/pub/${chat}`, '"wake"', bearer)).status === 200)
  }

  // Each node answers a real request after the abandoned ones (so their answers were written, or skipped, by now).
  for (const n of nodes) await waitFor(`${n.role} answers`, async () => (await json(n.port, 'GET', '/_espra/health')).status === 200)
  await waitFor('Live answers through the proxy', async () => (await json(port('proxy'), 'GET', `/history/${chat}`, undefined, { host: LIVE_HOST, ...bearer })).status === 200)
  await waitFor('Live answers directly', async () => (await json(port('live'), 'GET', `/presence/${chat}`, undefined, bearer)).status === 200)
  await waitFor('the app answers', async () => (await send({ host: '127.0.0.1', port: port('app'), path: '/', agent: false })).status === 200)

  for (const n of nodes) {
    t.equal(await crashes(n.metricsPort), 0, `${n.role}: no child crashed`)
    t.equal(childPids(n.pid).sort().join(','), before.get(n.role), `${n.role}: the same child processes`)
  }
  t.same(await healthWords(nodes), Object.fromEntries(nodes.map((n) => [n.role, 'ok'])), 'every node is still ok')
})
