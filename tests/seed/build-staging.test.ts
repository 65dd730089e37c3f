// Two-phase deploys at the seed, over the real meta port: app and fileserver node peers stage a build,
// it goes current only when all did; a refusal, a newer push, a rollback and a node leaving; hostile answers.
import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import type { MetaClient } from '../../lib/transport/meta-client.js'
import { client, nodeClient, startTestSeed } from '../helpers/seed.js'
import { until } from '../helpers/meta.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const body = Buffer.from('export function handle() { return "x" }\n')
const manifest = { files: [{ path: 'server/index.js', size: body.length, hash: sha(body), type: 'text/javascript' }] }

interface Push { op: string; id: string }

/** A node peer of `role` subscribed to builds; `pushes` holds every build op it was sent. */
async function stager(t: Test, port: number, id: string, role: 'app' | 'fileserver') {
  const pushes: Push[] = []
  const c = await nodeClient(t, port, id, { role }, {
    onPush: (op, b) => void (op.startsWith('build') && pushes.push({ op, id: (b as { id: string }).id })),
  })
  await c.request('subscribe', { builds: true })
  return { c, pushes }
}

const ops = (pushes: Push[], id: string) => pushes.filter((p) => p.id === id).map((p) => p.op)
const status = (c: MetaClient, id: string) => c.request<{ state: string; current: boolean; nodes: { node: string; state: string; code?: string }[] }>('build.status', { id })

t.test('a build goes current only once every app node and fileserver staged it', async (t) => {
  const { port } = await startTestSeed(t)
  const admin = client(t, port)
  await admin.ready
  await admin.request('build.blob', { hash: sha(body), offset: 0, chunk: body, last: true })
  const app = await stager(t, port, 'app-1', 'app')
  const fs = await stager(t, port, 'fs-1', 'fileserver')
  const live = await nodeClient(t, port, 'live-1', { role: 'live' })

  const b1 = await admin.request<{ id: string; staging: string[] }>('build.commit', { manifest })
  t.same(b1.staging, ['app-1', 'fs-1'], 'the commit names the nodes that stage it')
  await until(() => ops(app.pushes, 'b1').length === 1 && ops(fs.pushes, 'b1').length === 1, 3000, 'build.stage sent')
  t.same(ops(app.pushes, 'b1'), ['build.stage'])
  t.match(await status(admin, 'b1'), { state: 'staging', current: false, nodes: [{ node: 'app-1', state: 'staging' }, { node: 'fs-1', state: 'staging' }] })
  t.match(await admin.request('build.current', {}), { id: null }, 'not current while staging')

  // Hostile or confused answers: each refused with a precise error, nothing changes.
  await t.rejects(admin.request('build.staged', { id: 'b1' }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'peer' } }, 'an admin peer cannot say staged')
  await t.rejects(live.request('build.staged', { id: 'b1' }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'id' } }, 'a node not asked cannot say staged')
  await t.rejects(app.c.request('build.staged', { id: '../b1' }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'id' } })
  await t.rejects(app.c.request('build.staged', { id: 'b9' }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'id' } }, 'a build not staging')
  await t.rejects(app.c.request('build.staged', []), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'body' } })
  await t.rejects(app.c.request('build.refused', { id: 'b1', code: 'nope', message: 'x' }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'code' } })
  await t.rejects(admin.request('build.status', { id: 5 }), { code: 'ESPRA_ERR_BUILD_INVALID', details: { field: 'id' } })
  await t.rejects(admin.request('build.status', { id: 'b99' }), { code: 'ESPRA_ERR_BUILD_NOT_FOUND' })

  await app.c.request('build.staged', { id: 'b1' })
  t.match(await status(admin, 'b1'), { state: 'staging', nodes: [{ node: 'app-1', state: 'staged' }, { node: 'fs-1', state: 'staging' }] })
  t.same(ops(app.pushes, 'b1'), ['build.stage'], 'no activation while one node still stages')
  await fs.c.request('build.staged', { id: 'b1' })
  await until(() => ops(app.pushes, 'b1').length === 2 && ops(fs.pushes, 'b1').length === 2, 3000, 'activation sent')
  t.same(ops(fs.pushes, 'b1'), ['build.stage', 'build'], 'activated everywhere')
  t.match(await status(admin, 'b1'), { state: 'live', current: true })
  await t.rejects(app.c.request('build.staged', { id: 'b1' }), { code: 'ESPRA_ERR_BUILD_INVALID' }, 'no round once activated')

  // A refusal: current nowhere, every stager told to drop it, the node's error kept.
  await admin.request('build.commit', { manifest, message: 'bad' })
  await until(() => ops(fs.pushes, 'b2').length === 1, 3000, 'b2 staging')
  await fs.c.request('build.staged', { id: 'b2' })
  await app.c.request('build.refused', { id: 'b2', code: 'ESPRA_ERR_APP_INIT', message: 'build b2 refused: boom' })
  await until(() => ops(fs.pushes, 'b2').length === 2, 3000, 'b2 cancelled')
  t.same(ops(fs.pushes, 'b2'), ['build.stage', 'build.cancel'])
  t.same(ops(app.pushes, 'b2'), ['build.stage', 'build.cancel'])
  t.match(await status(admin, 'b2'), { state: 'refused', current: false, nodes: [{ node: 'app-1', state: 'refused', code: 'ESPRA_ERR_APP_INIT' }, { node: 'fs-1', state: 'staged' }] })
  const list = await admin.request<{ current: string; builds: { id: string; state: string; current: boolean; refused: unknown[] }[] }>('build.list', {})
  t.equal(list.current, 'b1')
  t.match(list.builds[0], { id: 'b2', state: 'refused', current: false, refused: [{ node: 'app-1', code: 'ESPRA_ERR_APP_INIT', message: 'build b2 refused: boom' }] })

  // A newer push replaces a build still staging.
  await admin.request('build.commit', { manifest, message: 'slow' })
  await admin.request('build.commit', { manifest, message: 'newer' })
  await until(() => ops(app.pushes, 'b4').length === 1, 3000, 'b4 staging')
  t.same(ops(app.pushes, 'b3'), ['build.stage', 'build.cancel'], 'b3 dropped before b4 is staged')
  t.match(await status(admin, 'b3'), { state: 'replaced', current: false })
  await t.rejects(app.c.request('build.staged', { id: 'b3' }), { code: 'ESPRA_ERR_BUILD_INVALID' }, 'a late answer for the replaced build')
  await app.c.request('build.staged', { id: 'b4' })
  // A node that leaves while staging leaves the round (it gets the current build when it subscribes again).
  fs.c.destroy()
  await until(async () => (await status(admin, 'b4')).state === 'live', 3000, 'b4 live without the node that left')
  t.match(await admin.request('build.current', {}), { id: 'b4' })

  // A rollback stages too.
  const rolled = await admin.request<{ id: string; staging: string[] }>('build.rollback', { id: 'b1' })
  t.same(rolled, { id: 'b1', staging: ['app-1'] })
  t.match(await admin.request('build.current', {}), { id: 'b4' }, 'still b4 while b1 stages again')
  await app.c.request('build.staged', { id: 'b1' })
  await until(async () => (await admin.request<{ id: string }>('build.current', {})).id === 'b1', 3000, 'rolled back')
})
