// Tagged IPC against a real forked process: routing by tag, replies by sequence number, errors by code, timeouts.
import t from 'tap'
import { fork } from 'node:child_process'
import { resolve } from 'node:path'
import { EspraError } from '../../../lib/core/errors.js'
import type { NodeState } from '../../../lib/core/node-state.js'
import { createIpcEndpoint, routeByTag, type ChildStats, type IpcPort, type TagHandlers, type ToChild, type ToParent } from '../../../lib/process/ipc.js'

const PEER = resolve(import.meta.dirname, 'fixtures/ipc-peer.ts')
const STATE: NodeState = { draining: false, childrenAlive: 1, childrenWanted: 1, seedConnected: false, build: null, crashLooping: [], routing: null }

t.test('parent and child talk through tagged messages', async (t) => {
  const proc = fork(PEER, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced' })
  t.teardown(() => proc.kill('SIGKILL'))
  const seen: { listening: number[]; failed: string[]; stats: ChildStats[]; role: unknown[] } = { listening: [], failed: [], stats: [], role: [] }
  const ipc = createIpcEndpoint<ToParent, ToChild>(
    proc as unknown as IpcPort,
    {
      listening: (msg) => void seen.listening.push(msg.port),
      failed: (msg) => void seen.failed.push(msg.err.message),
      stats: (msg) => void seen.stats.push(msg.stats),
      role: (msg) => void seen.role.push(msg.body),
      'role-req': (msg) => {
        if ((msg.body as { fail?: boolean }).fail) throw new EspraError('ESPRA_ERR_HTTP_DRAINING')
        return { echo: msg.body }
      },
    },
    () => t.fail('the child sent nothing unknown'),
  )
  const until = async (check: () => boolean): Promise<void> => {
    while (!check()) await new Promise((r) => setTimeout(r, 10))
  }

  ipc.send({ t: 'init', index: 7, startedAt: Date.now(), config: {} as never, state: STATE })
  await until(() => seen.listening.length > 0)
  t.same(seen.listening, [7], 'routed by tag, answered with a message of its own')

  const first = ipc.request<{ name: string }[]>({ t: 'metrics' }, 2000)
  const second = ipc.request<{ name: string }[]>({ t: 'metrics' }, 2000)
  t.same((await Promise.all([first, second])).map((m) => m[0]!.name), ['x', 'x'], 'replies matched by sequence number')

  ipc.send({ t: 'state', state: { ...STATE, draining: true } })
  await t.rejects(ipc.request({ t: 'metrics' }, 2000), { code: 'ESPRA_ERR_HTTP_DRAINING' }, 'a thrown error crosses as its code')

  ipc.send({ t: 'push', push: { op: 'routing', body: { version: 1 } } })
  await until(() => seen.failed.length > 0)
  t.same(seen.failed, ['echo routing'])

  ipc.send({ t: 'role', body: { n: 1 } })
  ipc.send({ t: 'role', body: { fail: true } })
  await until(() => seen.role.length === 2)
  t.same(seen.role, [{ answer: { echo: { n: 1 } } }, { error: 'ESPRA_ERR_HTTP_DRAINING' }], 'role requests from the child are answered by the parent, errors by code')

  proc.send({ t: 'bogus' })
  proc.send('not even tagged')
  await until(() => seen.stats.length === 2)
  t.ok(seen.stats.every((s) => s.lagMs > 0), 'unknown messages reach the unknown handler')

  ipc.send({ t: 'drain', timeoutMs: 0 })
  await t.rejects(ipc.request({ t: 'metrics' }, 100), { code: 'ESPRA_ERR_IPC_TIMEOUT' }, 'no reply in time')
  const pending = ipc.request({ t: 'metrics' }, 5000)
  ipc.close()
  await t.rejects(pending, { code: 'ESPRA_ERR_IPC_TIMEOUT' }, 'close fails pending requests')

  const exited = new Promise((r) => proc.once('exit', r))
  proc.disconnect()
  t.equal(await exited, 0, 'the child leaves when the channel closes')
  ipc.send({ t: 'state', state: STATE })
  t.pass('sending on a closed channel is a no-op')
})

t.test('routeByTag: role bodies go to the handler of their tag, with the sender; anything else to onUnknown', async (t) => {
  type Msg = { t: 'add'; n: number } | { t: 'name' }
  const handlers: TagHandlers<Msg, number> = { add: (msg, from) => msg.n + from, name: () => 'table' }
  const unknown: unknown[] = []
  const route = routeByTag(handlers, (body, from) => {
    unknown.push([body, from])
    throw new EspraError('ESPRA_ERR_IPC_UNKNOWN', 'no handler')
  })
  t.equal(route({ t: 'add', n: 2 }, 40), 42, 'the handler answers, given the sender')
  t.equal(route({ t: 'name' }, 0), 'table')
  for (const body of [{ t: 'toString' }, { t: 'constructor' }, { t: 7 }, null, 'add', {}]) {
    t.throws(() => route(body, 1), { code: 'ESPRA_ERR_IPC_UNKNOWN' }, `${JSON.stringify(body)} is refused`)
  }
  t.equal(unknown.length, 6, 'inherited names are not handlers')
})
