// A drained app node that stays up (`admin drain --then idle`): it leases no task, gives the tasks it leased but
// has not started back to the queue at once, lets the running one finish, and takes tasks again once undrained.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { encodePayload } from '../../lib/tasks/task.js'
import { admin, startAppCluster, writeBuild } from '../helpers/app-cluster.js'
import { waitFor } from '../helpers/cluster.js'
import { sleep } from '../helpers/meta.js'
import { client } from '../helpers/seed.js'
import { testDir } from '../helpers/temp-dir.js'

const APP = `
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
export async function handle() {
  return { body: 'pong' }
}
export async function handleTask(task) {
  appendFileSync(join(task.payload.dir, 'runs.log'), JSON.stringify({ id: task.id, step: 'start', attempt: task.attempt }) + '\\n')
  await new Promise((r) => setTimeout(r, 3000))
  appendFileSync(join(task.payload.dir, 'runs.log'), JSON.stringify({ id: task.id, step: 'done', attempt: task.attempt }) + '\\n')
}
`

interface Run { id: string; step: string; attempt: number }
const runsOf = (dir: string): Run[] => {
  try {
    return readFileSync(join(dir, 'runs.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Run)
  } catch {
    return []
  }
}

t.test('drain --then idle of an app node: tasks not started go back to the queue; undrain runs them', async (t) => {
  const cluster = await startAppCluster(t, { children: 1, threads: 1, 'task-concurrency': 1, 'task-lease': '20s' })
  const app = await cluster.startApp()
  await cluster.push(writeBuild({ 'server/index.js': APP }), 'b1')
  await cluster.serving(app, 'b1')
  // In-process admin link: a CLI process per look would be slower than the tasks on a busy machine.
  const seed = client(t, Number(cluster.seedAddress.split(':')[1]))
  await seed.ready
  const counts = () => seed.request<Record<string, number>>('tasks.counts', {})
  const dir = testDir('espra-drain-tasks-')
  for (let i = 0; i < 6; i++) await seed.request('tasks.enqueue', { name: 'slow', payload: encodePayload({ dir }) })
  // One task runs at a time (concurrency 1); the consumer leases the rest ahead.
  await waitFor('one started, the rest leased ahead', async () => runsOf(dir).length === 1 && (await counts())['leased'] === 6)

  await seed.request('node.drain', { id: 'app-1', then: 'idle', graceMs: 0 })
  const line = await app.waitForLog((l) => l.msg === 'node drained: tasks not started given back to the queue', 'tasks given back')
  const started = new Set(runsOf(dir).filter((r) => r.step === 'start').map((r) => r.id)).size
  t.equal(line['released'], 6 - started, `the ${6 - started} not started`)
  await waitFor('the running task finished', () => runsOf(dir).filter((r) => r.step === 'done').length === started)
  await waitFor('the rest ready, none leased', async () => {
    const c = await counts()
    return c['ready'] === 6 - started && c['leased'] === 0
  })
  await sleep(2500)
  t.match(await counts(), { ready: 6 - started, leased: 0 }, 'drained: nothing leased since')
  t.equal(runsOf(dir).filter((r) => r.step === 'start').length, started, 'and nothing started')

  const undrained = await admin(['undrain', 'app-1', '--seed', cluster.seedAddress])
  t.equal(undrained.code, 0, undrained.stderr)
  await waitFor('every task done', () => new Set(runsOf(dir).filter((r) => r.step === 'done').map((r) => r.id)).size === 6, 120_000)
  t.same(runsOf(dir).filter((r) => r.step === 'start' && r.attempt !== 1), [], 'a released task kept its attempt (released does not count)')
})
