// Restarts that fail nothing: under continuous keep-alive load, a SIGHUP of a node of `up` replaces
// its children one at a time and not one request fails (any status but 200, any socket error), not
// one publish fails, and a Live subscriber that resumes by sequence misses nothing. Regression for
// issue 11: the app node answered 2,667 of 11,882 requests 503 (new children took requests before
// they had loaded the build, the draining one answered 503) and the fileserver 157 of 72,350 with
// 404 (new children listened before the build was in memory).
import t from 'tap'
import { childPids, pidAlive, runCli, startUp, waitFor, type UpCluster } from '../helpers/up.js'
import { startHttpLoad, startLiveCheck, type HttpLoad } from '../helpers/reload-load.js'

const CONNECTIONS = 10
const LIVE_HOST = 'us-1.live.localhost'
/** Load keeps running this long after the replacement finished: requests on the new children count too. */
const AFTER_MS = 1000

interface NodeJson {
  role: string
  pid: number
  port: number
  health: string
}

const cluster: UpCluster = await startUp(t)
const nodes = async (): Promise<NodeJson[]> => {
  const r = await runCli(['admin', 'nodes', '--json'], { cwd: cluster.dir })
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as NodeJson[]
}
await waitFor('the sample app served by the app node', async () => (await fetch(`http://127.0.0.1:${cluster.port('app')}/`)).status === 200, 30_000)
await waitFor('the sample app assets on the fileserver', async () => (await fetch(`http://127.0.0.1:${cluster.port('fileserver')}/app/public/style.css`)).status === 200, 30_000)
const minted = await runCli(['admin', 'token', '--pub', 'load:*', '--sub', 'load:*'], { cwd: cluster.dir })
t.equal(minted.code, 0, minted.stderr)
const token = minted.stdout.trim()

/** What each role is loaded with: the node itself, directly (the proxy: a Live read through it). */
function loadFor(role: string): HttpLoad {
  const port = cluster.port(role as never)
  if (role === 'app') return startHttpLoad(port, '/', { connections: CONNECTIONS })
  if (role === 'fileserver') return startHttpLoad(port, '/app/public/style.css', { connections: CONNECTIONS })
  if (role === 'live') return startHttpLoad(port, '/history/load:read?limit=1', { connections: CONNECTIONS, headers: { authorization: `Bearer ${token}` } })
  return startHttpLoad(cluster.port('proxy'), '/history/load:read?limit=1', { connections: CONNECTIONS, headers: { host: LIVE_HOST, authorization: `Bearer ${token}` } })
}

/** SIGHUP the node's parent; resolves once every child is new, every old one has exited, and health is ok. */
async function sighup(role: string): Promise<void> {
  const node = (await nodes()).find((n) => n.role === role)!
  const before = childPids(node.pid)
  process.kill(node.pid, 'SIGHUP')
  await waitFor(`${role}: every child replaced`, () => {
    const now = childPids(node.pid)
    return now.length === before.length && now.every((p) => !before.includes(p)) && before.every((p) => !pidAlive(p))
  }, 60_000)
  await waitFor(`${role}: registered and healthy`, async () => (await nodes()).some((n) => n.role === role && n.pid === node.pid && n.health === 'ok'), 20_000)
}

for (const role of ['app', 'fileserver', 'proxy', 'live']) {
  t.test(`SIGHUP of the ${role} node under load: 0 failed requests, 0 failed publishes, no gap`, async (t) => {
    const http = loadFor(role)
    const live = await startLiveCheck(cluster.port('proxy'), LIVE_HOST, token, `load:${role}`)
    await new Promise((r) => setTimeout(r, 500))
    http.mark()
    live.mark()
    await sighup(role)
    await new Promise((r) => setTimeout(r, AFTER_MS))
    const [h, l] = await Promise.all([http.stop(), live.stop()])
    t.comment(`${role} SIGHUP, ${CONNECTIONS} keep-alive clients: ${h.sent} sent, ${h.failed} failed ${JSON.stringify(h.failures)}, p99 ${h.p99Ms} ms, max ${h.maxMs} ms, ${h.closes} told to close`)
    t.comment(`live through the proxy: ${l.published} published, ${l.failedPublishes} failed ${JSON.stringify(l.failures)}, p99 ${l.p99Ms} ms; ${l.received} received, ${l.missing} missing, ${l.disorder} out of order, ${l.reconnects} reconnects, ${l.unrecovered} unrecovered`)
    t.ok(h.sent > 0, 'requests were sent')
    t.equal(h.failed, 0, `no failed requests (${JSON.stringify(h.failures)})`)
    t.equal(l.failedPublishes, 0, `no failed publishes (${JSON.stringify(l.failures)})`)
    t.equal(l.missing, 0, `every acknowledged publish reached the subscriber (${l.detail})`)
    t.equal(l.disorder, 0, 'in order, once')
    t.equal(l.unrecovered, 0, 'every resume was covered by history')
  })
}
