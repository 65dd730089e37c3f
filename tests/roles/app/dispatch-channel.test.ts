// The shared-memory channel between an app child's main thread and a worker (roles/app/slot-ring.ts), through a
// real app node with one worker: requests and answers that fit a slot go through the rings, larger ones as messages;
// mixed and many at once on one worker, every request is answered once with its own answer.
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { sendForBytes } from '../../helpers/http.js'

const APP = `
let order = 0
export async function handle(req) {
  const size = Number(req.searchParams.get('size') ?? 0)
  const tag = req.searchParams.get('tag')
  const digest = (await import('node:crypto')).createHash('sha256').update(req.body).digest('hex')
  return { headers: { 'x-tag': tag, 'x-order': String(order++), 'x-body': digest + ':' + req.body.length, 'x-h': req.headers['x-h'] ?? '' }, body: 'r'.repeat(size) + tag }
}
`

t.test('small and large requests and answers, many at once on one worker: each answered once with its own answer', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1 })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const { createHash } = await import('node:crypto')
  // Sizes around the 8 KB slot: a body or answer of 20 KB or 200 KB, a header of 10 KB, never fits; 100 B always does.
  const cases = Array.from({ length: 60 }, (_, i) => ({
    tag: `t${i}`,
    size: [0, 100, 20_000, 200_000][i % 4]!,
    body: i % 3 === 0 ? Buffer.alloc([10, 20_000, 100_000][i % 3 === 0 ? (i / 3) % 3 : 0]!, i) : Buffer.alloc(0),
    header: i % 5 === 0 ? 'h'.repeat(10_000) : 'small',
  }))
  const answers = await Promise.all(cases.map((c) => sendForBytes({ host: '127.0.0.1', port: app.port, path: `/x?size=${c.size}&tag=${c.tag}`, method: 'POST', agent: false, headers: { 'x-h': c.header } }, c.body)))
  const orders = new Set<string>()
  for (const [i, c] of cases.entries()) {
    const a = answers[i]!
    t.equal(a.status, 200, `${c.tag} answered`)
    t.equal(a.headers['x-tag'], c.tag, `${c.tag}: its own answer`)
    t.equal(a.body.toString(), 'r'.repeat(c.size) + c.tag, `${c.tag}: the whole body (${c.size} B)`)
    t.equal(a.headers['x-body'], createHash('sha256').update(c.body).digest('hex') + ':' + c.body.length, `${c.tag}: the worker got the whole request body`)
    t.equal(a.headers['x-h'], c.header, `${c.tag}: the request header arrived whole`)
    orders.add(String(a.headers['x-order']))
  }
  t.equal(orders.size, cases.length, 'each request ran once')
})
