// The worker pool's requests handed ahead (roles/app/pool.ts), through a real app node: a worker busy
// with a request also holds the next ones, and those must not fail when that worker is stopped.
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get } from '../../helpers/cluster.js'

const APP = `
let ctx
export function init(c) { ctx = c }
export async function handle(req) {
  if (req.path === '/loop') for (;;) {}
  if (req.path === '/sleep') {
    ctx.log.info({ tag: req.searchParams.get('tag') }, 'app sleeping')
    await new Promise((r) => setTimeout(r, Number(req.searchParams.get('ms'))))
  }
  return { body: 'ok' }
}
`

t.test('requests handed ahead to a worker stopped for another request\'s timeout are answered by another worker', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 2, 'request-timeout': '4s' })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const port = app.port

  // One worker loops until its timeout; the other sleeps past that moment (and well within its own timeout).
  const looping = get(port, '/loop')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const sleeping = get(port, '/sleep?ms=3000&tag=s')
  await app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === 's', 'the sleep running')
  // Both workers busy: each is handed one of these ahead, so one waits behind the loop.
  const waiting = [get(port, '/'), get(port, '/')]
  t.equal((await looping).status, 504, 'the loop times out')
  await app.waitForLog((l) => l.msg === 'requests an ended app worker had not started go to other workers', 'the looping worker handed its waiting request back')
  t.same((await Promise.all(waiting)).map((a) => [a.status, a.body]), [[200, 'ok'], [200, 'ok']], 'both answered, none failed')
  t.equal((await sleeping).status, 200)
})
