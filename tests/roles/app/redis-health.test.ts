// Regression: during a Redis outage an app node's health stayed `ok` while every enqueue failed,
// and the error carried ioredis internals ("Reached the max retries per request limit ...").
// Now: health `degraded` with dependencies.redis in our words while Redis is down, ok again when
// it returns, and enqueue errors in our words (uncaught: 503 with Retry-After, not the app's 500).
import t from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { health, waitFor } from '../../helpers/cluster.js'
import { startRedis } from '../../helpers/redis.js'

const APP = `
let ctx
export async function init(c) { ctx = c }
export async function handle(req) {
  if (req.path === '/caught') {
    try {
      return { status: 200, body: JSON.stringify({ task: await ctx.enqueue('job', { n: 1 }) }) }
    } catch (err) {
      return { status: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: err.code, message: err.message }) }
    }
  }
  if (req.path === '/uncaught') return { status: 200, body: JSON.stringify({ task: await ctx.enqueue('job', { n: 2 }) }) }
  return { status: 404, body: 'no' }
}
`

async function get(port: number, path: string): Promise<{ status: number; retryAfter: string | null; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> }
}

t.test('Redis down: app node degraded with the reason, errors in our words; Redis back: ok again', async (t) => {
  const redis = await startRedis(t)
  const cluster = await startAppCluster(t, { redis: redis.url, children: 1, threads: 1 })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')

  const before = await health(app.port)
  t.match(before.body, { health: 'ok' })
  t.notOk('dependencies' in before.body, 'no dependency listed while Redis is up')
  t.equal((await get(app.port, '/caught')).status, 200, 'enqueue works')

  await redis.stop()
  const degraded = await waitFor('health degraded', async () => {
    const h = await health(app.port)
    return h.body['health'] === 'degraded' && h
  }, 15_000)
  t.equal(degraded.status, 200, 'still 200: the node serves what does not need Redis')
  t.match(degraded.body['dependencies'], { redis: /^down: cannot reach Redis at 127\.0\.0\.1:\d+ \((connection lost|connection refused)\)$/ }, 'the reason, in our words')
  // First the connection is lost; the next reconnection attempt is refused, and health says so.
  const refused = await waitFor('the reason: connection refused', async () => {
    const h = await health(app.port)
    return (h.body['dependencies'] as Record<string, string> | undefined)?.['redis'] === `down: cannot reach Redis at 127.0.0.1:${redis.port} (connection refused)` && h
  }, 10_000)
  t.equal(refused.body['health'], 'degraded')
  const seen = await waitFor('the seed sees it degraded', async () => {
    const r = await admin(['nodes', '--json', '--seed', cluster.seedAddress])
    const node = (JSON.parse(r.stdout) as { role: string; health: string }[]).find((n) => n.role === 'app')
    return node?.health === 'degraded' && node
  })
  t.ok(seen, 'admin nodes shows degraded')

  const caught = await get(app.port, '/caught')
  t.equal(caught.status, 503)
  t.same(caught.body, { code: 'ESPRA_ERR_TASK_UNAVAILABLE', message: `the task queue is unavailable: cannot reach Redis at 127.0.0.1:${redis.port} (connection refused)` }, 'what the app gets is ours')
  const uncaught = await get(app.port, '/uncaught')
  t.equal(uncaught.status, 503, 'uncaught: 503, not 500')
  t.equal(uncaught.retryAfter, '1')
  t.match(uncaught.body, { code: 'ESPRA_ERR_TASK_UNAVAILABLE', message: /^the task queue is unavailable: cannot reach Redis at / })
  for (const body of [caught.body, uncaught.body]) t.notMatch(JSON.stringify(body), /maxRetriesPerRequest|Reached the max retries|ECONNREFUSED|ioredis/)

  await redis.restart()
  const back = await waitFor('health ok again', async () => {
    const h = await health(app.port)
    return h.body['health'] === 'ok' && h
  }, 20_000)
  t.notOk('dependencies' in back.body, 'nothing listed once Redis is back')
  const ok = await waitFor('enqueue works again', async () => {
    const r = await get(app.port, '/caught')
    return r.status === 200 && r
  }, 20_000)
  t.match(ok.body, { task: /^t\d+$/ })
})
