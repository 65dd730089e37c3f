// App and seed metrics from real traffic: a seed and an app node running a build; requests by status class,
// a request timeout, tasks by result; on the seed, nodes by role and health, task queue depth, datastore ops.
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get, waitFor } from '../../helpers/cluster.js'
import { send } from '../../helpers/http.js'
import { answered, scrape, type PromText } from '../../helpers/prom-text.js'

const APP = `
let ctx
export function init(c) { ctx = c }
export async function handle(req) {
  if (req.path.startsWith('/status/')) return { status: Number(req.path.slice(8)), body: 'as asked' }
  if (req.path === '/slow') { await new Promise((r) => setTimeout(r, 5000)); return { body: 'late' } }
  if (req.path === '/enqueue') return { body: JSON.stringify({ id: await ctx.enqueue(req.searchParams.get('name'), 1, { attempts: 1 }) }) }
  if (req.path === '/table') { await ctx.tables.set('t', 'k', { v: 1 }); return { body: JSON.stringify(await ctx.tables.get('t', 'k')) } }
  return { body: 'ok' }
}
export async function handleTask(task) {
  if (task.name === 'fail') throw new Error('fails on purpose')
}
`
const v = (p: PromText, name: string, labels: Record<string, string> = {}) => p.find(name, labels).reduce((n, s) => n + s.value, 0)

t.test('app: answers by status class, a timeout, tasks by result; seed: nodes, tasks, datastore ops', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 2, 'request-timeout': '500ms', 'task-backoff': '100ms' })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')

  const seedBefore = await scrape(cluster.seed.metricsPort)
  t.equal(seedBefore.value('espra_seed_nodes', { process: 'parent', role: 'app', health: 'ok' }), 1, 'the app node, registered and ok')
  t.equal(seedBefore.value('espra_seed_nodes', { process: 'parent', role: 'live', health: 'ok' }), 0, 'zero where there is none')
  t.ok(seedBefore.value('espra_seed_meta_connections', { process: 'parent', kind: 'node' }) >= 1)

  const before = await scrape(app.metricsPort)
  t.equal(before.value('espra_app_workers', { child: '0' }), 2)
  t.equal((await get(app.port, '/table')).status, 200, 'a datastore put and get through the seed')
  const enqueue = async (name: string) => (await send({ host: '127.0.0.1', port: app.port, path: `/enqueue?name=${name}`, method: 'GET', agent: false })).status
  t.equal(await enqueue('ok'), 200)
  t.equal(await enqueue('fail'), 200)
  for (let i = 0; i < 3; i++) t.equal((await get(app.port, '/status/404')).status, 404)
  t.equal((await get(app.port, '/status/302')).status, 302)
  t.equal((await get(app.port, '/status/500')).status, 500)
  // Last: a timeout terminates its worker, and the replacement takes a moment.
  t.equal((await get(app.port, '/slow')).status, 504, 'past --request-timeout')
  const after = await waitFor('both tasks settled', async () => {
    const p = await scrape(app.metricsPort)
    return v(p, 'espra_app_tasks_total', { result: 'done' }) - v(before, 'espra_app_tasks_total', { result: 'done' }) === 1 &&
      v(p, 'espra_app_tasks_total', { result: 'failed' }) - v(before, 'espra_app_tasks_total', { result: 'failed' }) === 1 && p
  }, 20_000)
  const h = 'espra_app_http_request_duration_seconds'
  const d = (status: string) => answered(after, h, { status }) - answered(before, h, { status })
  t.equal(d('4xx'), 3, 'three 404s')
  t.equal(d('3xx'), 1)
  t.equal(d('5xx'), 2, 'the 500 and the 504')
  t.equal(d('2xx'), 3, 'the table request and two enqueues')
  t.equal(v(after, 'espra_app_request_timeouts_total') - v(before, 'espra_app_request_timeouts_total'), 1, 'one timeout')
  t.equal(v(after, 'espra_app_requests_refused_busy_total'), 0)

  const seedAfter = await waitFor('the failed task is dead on the seed', async () => {
    const p = await scrape(cluster.seed.metricsPort)
    return p.value('espra_seed_tasks', { process: 'parent', queue: 'app', state: 'dead' }) === 1 && p
  }, 20_000)
  t.equal(seedAfter.value('espra_seed_tasks', { process: 'parent', queue: 'mail', state: 'ready' }), 0)
  const ops = (p: PromText, op: string) => p.find('espra_seed_datastore_op_duration_seconds_count', { op }).reduce((n, s) => n + s.value, 0)
  t.ok(ops(seedAfter, 'put') - ops(seedBefore, 'put') >= 1, 'the table put timed on the seed')
  t.ok(ops(seedAfter, 'get') - ops(seedBefore, 'get') >= 1, 'the table get timed on the seed')
  t.end()
})
