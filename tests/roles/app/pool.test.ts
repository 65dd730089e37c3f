// The worker pool's requests handed ahead (roles/app/pool.ts), through a real app node: a worker busy
// with a request also holds the next ones, and those must not fail when that worker is stopped.
import t from 'tap'
import { startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { get } from '../../helpers/cluster.js'

const APP = `
let ctx
export function init(c) { ctx = c }
export async function handle(req) {
  if (req.path === '/loop') {
    ctx.log.info('app looping')
    for (;;) {}
  }
  if (req.path === '/sleep') {
    ctx.log.info({ tag: req.searchParams.get('tag') }, 'app sleeping')
    await new Promise((r) => setTimeout(r, Number(req.searchParams.get('ms'))))
  }
  return { body: 'ok' }
}
`

t.test('requests handed ahead to a worker stopped for another request\'s timeout are answered by another worker', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 2, 'request-timeout': '8s' })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const port = app.port

  // One worker loops until its timeout (8 s after it started); the other sleeps past that moment (it starts
  // 4 s after the loop and sleeps 6 s, well within its own timeout), so the loop's end comes first.
  const looping = get(port, '/loop')
  await app.waitForLog((l) => l.msg === 'app looping', 'the loop running')
  await new Promise((resolve) => setTimeout(resolve, 4000))
  const sleeping = get(port, '/sleep?ms=6000&tag=s')
  await app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === 's', 'the sleep running')
  // Both workers busy: each is handed one of these ahead, so one waits behind the loop.
  const waiting = [get(port, '/'), get(port, '/')]
  t.equal((await looping).status, 504, 'the loop times out')
  await app.waitForLog((l) => l.msg === 'requests an ended app worker had not started go to other workers', 'the looping worker handed its waiting request back')
  t.same((await Promise.all(waiting)).map((a) => [a.status, a.body]), [[200, 'ok'], [200, 'ok']], 'both answered, none failed')
  t.equal((await sleeping).status, 200)
})

t.test('an idle worker takes back requests handed to a busy one; on drain, those handed ahead are still answered', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 2 })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  const port = app.port
  const running = (tag: string) => app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === tag, `${tag} running`)

  let longAnswered = false
  const long = get(port, '/sleep?ms=4000&tag=long').then((a) => ((longAnswered = true), a))
  await running('long')
  const short = get(port, '/sleep?ms=300&tag=short')
  await running('short')
  // One handed ahead to each worker: the one behind the long sleep is taken back by the other worker once it is idle.
  const ahead = await Promise.all([get(port, '/'), get(port, '/'), short])
  t.same(ahead.map((a) => a.status), [200, 200, 200])
  t.notOk(longAnswered, 'answered while the long request still runs')

  const last = get(port, '/sleep?ms=1000&tag=last')
  await running('last')
  const queued = [get(port, '/'), get(port, '/')]
  const stopped = app.stop()
  t.same((await Promise.all(queued)).map((a) => a.status), [200, 200], 'handed ahead, not started when the drain began: answered, not refused')
  t.same([(await long).status, (await last).status], [200, 200], 'running ones finish')
  t.equal((await stopped).code, 0)
})
