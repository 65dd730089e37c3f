// `espra-node admin tasks` (and `admin status`) name the queue's real backend: a seed on PostgreSQL runs its task
// queue there and says so in its counts answer (it used to print "embedded" for every seed's queue); one seed on
// its embedded store says embedded. Real seeds, a real PostgreSQL.
import t, { type Test } from 'tap'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { admin } from '../../helpers/app-cluster.js'
import { freePort, startNode } from '../../helpers/cluster.js'
import { startPostgres } from '../../helpers/postgres.js'
import { client } from '../../helpers/seed.js'

const postgres = await startPostgres(t)

async function seedOn(t: Test, datastore: string | null) {
  const port = await freePort()
  await startNode(t, 'seed', { 'meta-port': port, ...(datastore !== null ? { datastore, 'node-id': 'seed-pg', seed: `127.0.0.1:${port}` } : {}) })
  return port
}

for (const [name, backend] of [['a seed on PostgreSQL', 'postgres'], ['one embedded seed', 'embedded']] as const) {
  t.test(`${name}: admin tasks says ${backend}`, async (t) => {
    const port = await seedOn(t, backend === 'postgres' ? await postgres.createDatabase() : null)
    const seed = `127.0.0.1:${port}`
    const text = await admin(['tasks', '--seed', seed])
    t.equal(text.code, 0, text.stderr)
    t.match(text.stdout, new RegExp(`^tasks \\(${backend} queue\\): 0 ready, 0 delayed, 0 leased, 0 dead\\n$`))
    const json = await admin(['tasks', '--json', '--seed', seed])
    t.match(JSON.parse(json.stdout), { backend, counts: { ready: 0, delayed: 0, leased: 0, dead: 0 } })
    t.notOk('backend' in JSON.parse(json.stdout).counts, 'the counts hold only counts')
    const status = await admin(['status', '--seed', seed])
    t.match(status.stdout, `tasks (${backend} queue): 0 ready`)
    // Over the meta port: the backend is known once a counts answer said it.
    const c = client(t, port)
    await c.ready
    const queue = createMetaTaskQueue(c)
    t.equal(queue.backend, 'seed', 'not known before the seed said')
    await queue.counts()
    t.equal(queue.backend, backend)
  })
}
