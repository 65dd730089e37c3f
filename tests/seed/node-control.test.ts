// node.reload on a real seed: only admin peers may ask; the seed pushes the request over the node's own
// link and answers with what the node reports (node.reloaded), or with why it could not: unknown node, a
// node without children, a child that could not be replaced, no answer in time, the node gone meanwhile.
import t from 'tap'
import type { MetaClient } from '../../lib/transport/meta-client.js'
import { until } from '../helpers/meta.js'
import { client, nodeClient, startTestSeed } from '../helpers/seed.js'

const { port } = await startTestSeed(t)
const admin = client(t, port)
await admin.ready

/** A node peer that answers every node.reload push with `answer` (or never, with null). */
async function reloadingNode(t: Parameters<typeof client>[0], id: string, answer: ((token: string) => Record<string, unknown>) | null, childrenWanted = 2) {
  const pushes: unknown[] = []
  let node!: MetaClient
  node = await nodeClient(t, port, id, { role: 'app', children: childrenWanted, childrenWanted }, {
    onPush: (op, body) => {
      if (op !== 'node.reload') return
      pushes.push(body)
      const token = (body as { token: string }).token
      if (answer) void node.request('node.reloaded', answer(token))
    },
  })
  return { node, pushes }
}

const codeOf = (p: Promise<unknown>) => p.then(() => null, (e: { code: string; message: string }) => e)

t.test('an admin asks, the node is pushed the request and its answer comes back', async (t) => {
  const { pushes } = await reloadingNode(t, 'app-ok', (token) => ({ token, replaced: 2, failed: [] }))
  t.same(await admin.request('node.reload', { id: 'app-ok' }), { replaced: 2, failed: [] })
  t.equal(pushes.length, 1, 'one push')
  t.match(pushes[0], { token: /^[0-9a-f-]{36}$/ })
})

t.test('a child that could not be replaced fails the request, naming it', async (t) => {
  await reloadingNode(t, 'app-bad', (token) => ({ token, replaced: 1, failed: [{ child: 1, code: 'ESPRA_ERR_INTERNAL', message: 'child 1 exited before listening' }] }))
  const err = await codeOf(admin.request('node.reload', { id: 'app-bad' }))
  t.equal(err?.code, 'ESPRA_ERR_NODE_RELOAD_FAILED')
  t.match(err?.message, /node 'app-bad' could not replace its children: child 1 could not be replaced \(ESPRA_ERR_INTERNAL: child 1 exited before listening\)/)
})

t.test('no answer within timeoutMs: a timeout error; a node that leaves meanwhile: a failure at once', async (t) => {
  const silent = await reloadingNode(t, 'app-silent', null)
  const timedOut = await codeOf(admin.request('node.reload', { id: 'app-silent', timeoutMs: 200 }))
  t.equal(timedOut?.code, 'ESPRA_ERR_NODE_RELOAD_TIMEOUT')
  const pending = codeOf(admin.request('node.reload', { id: 'app-silent', timeoutMs: 60_000 }))
  await until(() => silent.pushes.length === 2, 3000, 'the second push')
  silent.node.destroy()
  const gone = await pending
  t.equal(gone?.code, 'ESPRA_ERR_NODE_RELOAD_FAILED')
  t.match(gone?.message, /disconnected/)
})

t.test('another node cannot answer for the one asked', async (t) => {
  const asked = await reloadingNode(t, 'app-asked', null)
  const other = await reloadingNode(t, 'app-other', null)
  const pending = codeOf(admin.request('node.reload', { id: 'app-asked', timeoutMs: 1000 }))
  await until(() => asked.pushes.length === 1, 3000, 'the push')
  const token = (asked.pushes[0] as { token: string }).token
  t.same(await other.node.request('node.reloaded', { token, replaced: 2, failed: [] }), {}, 'answered, and ignored')
  t.equal((await pending)?.code, 'ESPRA_ERR_NODE_RELOAD_TIMEOUT', 'the asked node never answered')
})

t.test('hostile or wrong requests get precise errors', async (t) => {
  const peer = await reloadingNode(t, 'app-peer', null)
  const fromNode = await codeOf(peer.node.request('node.reload', { id: 'app-peer' }))
  t.equal(fromNode?.code, 'ESPRA_ERR_META_FORBIDDEN', 'a node peer may not ask')
  t.equal(peer.pushes.length, 0, 'and nothing was pushed')
  t.equal((await codeOf(admin.request('node.reload', { id: 'nobody' })))?.code, 'ESPRA_ERR_NODE_UNKNOWN')
  await nodeClient(t, port, 'seed-like', { role: 'seed', childrenWanted: 0, children: 0 })
  const noChildren = await codeOf(admin.request('node.reload', { id: 'seed-like' }))
  t.equal(noChildren?.code, 'ESPRA_ERR_NODE_RELOAD_UNSUPPORTED')
  for (const [body, field] of [
    [null, 'body'], [{}, 'id'], [{ id: 7 }, 'id'], [{ id: 'x'.repeat(129) }, 'id'], [{ id: 'a b' }, 'id'],
    [{ id: 'app-peer', timeoutMs: 0 }, 'timeoutMs'], [{ id: 'app-peer', timeoutMs: 1.5 }, 'timeoutMs'], [{ id: 'app-peer', timeoutMs: 'soon' }, 'timeoutMs'],
  ] as const) {
    const err = await codeOf(admin.request('node.reload', body))
    t.equal(err?.code, 'ESPRA_ERR_META_BAD_REQUEST', `${JSON.stringify(body)} refused`)
    t.match(err?.message, new RegExp(`^${field} must be `), `naming ${field}`)
  }
  const fromAdmin = await codeOf(admin.request('node.reloaded', { token: 'x', replaced: 1, failed: [] }))
  t.equal(fromAdmin?.code, 'ESPRA_ERR_META_NOT_REGISTERED', 'only a registered node answers a reload')
  for (const body of [{ token: 5, replaced: 1, failed: [] }, { token: 'x', replaced: -1, failed: [] }, { token: 'x', replaced: 1, failed: 'no' }, { token: 'x', replaced: 1, failed: [{ child: 'a' }] }]) {
    t.equal((await codeOf(peer.node.request('node.reloaded', body)))?.code, 'ESPRA_ERR_META_BAD_REQUEST', `node.reloaded ${JSON.stringify(body)} refused`)
  }
})
