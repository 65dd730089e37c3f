// The seed's maintenance.set / clear / get on a real seed: admin peers only, every body checked, the record in the
// datastore's cluster kind, a `maintenance` push to every registered node on change and on register, the end at
// `until` by the seed's own timer, and a restart of the seed on the same data directory keeping (or dropping) it.
import t from 'tap'
import { startSeed } from '../../seed/seed.js'
import { MAX_MAINTENANCE_MS } from '../../lib/http/maintenance.js'
import { createDatastoreClient } from '../../lib/storage/datastore-client.js'
import { captureLog, until } from '../helpers/meta.js'
import { client, nodeClient, startTestSeed } from '../helpers/seed.js'

type State = { message: string; until: number; hosts: string[] | null; allow: string[]; at: number } | null
const fail = (p: Promise<unknown>) => p.then(() => null, (e: { code: string; message: string; details?: { field?: string } }) => e)

t.test('admin peers set, read and clear it; every registered node hears each change', async (t) => {
  const { port } = await startTestSeed(t)
  const pushes: { state: State }[] = []
  await nodeClient(t, port, 'fs-1', { role: 'fileserver' }, { onPush: (op, body) => op === 'maintenance' && pushes.push(body as { state: State }) })
  await until(() => pushes.length === 1, 3000, 'the push on register')
  t.same(pushes.shift(), { state: null }, 'a node registering gets the current state: none')

  const admin = client(t, port)
  await admin.ready
  const before = Date.now()
  const set = await admin.request<{ state: NonNullable<State>; nodes: number }>('maintenance.set', { message: 'Upgrading the database', forMs: 60_000, hosts: ['A.Example.', 'b.example'], allow: ['10.0.0.0/8', '2001:db8::/32'] })
  t.equal(set.nodes, 1, 'one node told')
  t.match(set.state, { message: 'Upgrading the database', hosts: ['a.example', 'b.example'], allow: ['10.0.0.0/8', '2001:db8::/32'] }, 'hosts lower-cased, trailing dot dropped')
  t.ok(set.state.until >= before + 60_000 && set.state.until <= Date.now() + 60_000, 'forMs counts from the seed\'s clock')
  await until(() => pushes.length === 1, 3000, 'the push on set')
  t.same(pushes.shift(), { state: set.state })
  t.same((await admin.request<{ state: State }>('maintenance.get', {})).state, set.state)
  t.same(await createDatastoreClient(admin).get('cluster', 'maintenance'), set.state, 'kept in the datastore, kind cluster, key maintenance')

  // A second node registering later gets the state at once.
  const late: unknown[] = []
  await nodeClient(t, port, 'app-1', { role: 'app' }, { onPush: (op, body) => op === 'maintenance' && late.push(body) })
  await until(() => late.length === 1, 3000, 'the push to the late node')
  t.same(late[0], { state: set.state })

  t.same(await admin.request('maintenance.clear', {}), { cleared: true, nodes: 2 })
  await until(() => pushes.length === 1, 3000, 'the push on clear')
  t.same(pushes.shift(), { state: null })
  t.equal(await createDatastoreClient(admin).get('cluster', 'maintenance'), null)
  t.same(await admin.request('maintenance.clear', {}), { cleared: false, nodes: 2 }, 'clearing again says it was off')
})

t.test('node peers are refused every maintenance op', async (t) => {
  const { port } = await startTestSeed(t)
  const node = await nodeClient(t, port, 'proxy-1', { role: 'proxy' })
  for (const op of ['maintenance.set', 'maintenance.clear', 'maintenance.get']) {
    const err = await fail(node.request(op, { forMs: 60_000 }))
    t.equal(err?.code, 'ESPRA_ERR_META_FORBIDDEN', op)
    t.match(err?.message, /admin peers only/)
  }
  const admin = client(t, port)
  await admin.ready
  t.same((await admin.request<{ state: State }>('maintenance.get', {})).state, null, 'nothing was set')
})

t.test('hostile bodies are refused naming the field; nothing is set', async (t) => {
  const { port } = await startTestSeed(t)
  const admin = client(t, port)
  await admin.ready
  const now = Date.now()
  const cases: [string, unknown, string, RegExp][] = [
    ['not a map', 'x', 'body', /must be a map/],
    ['no until', { message: 'x' }, 'until', /is required/],
    ['both until and forMs', { until: now + 60_000, forMs: 60_000 }, 'until', /cannot both/],
    ['a past time', { until: now - 1000 }, 'until', /in the past/],
    ['over the maximum', { until: now + MAX_MAINTENANCE_MS + 60_000 }, 'until', /more than 7 days/],
    ['a duration over the maximum', { forMs: MAX_MAINTENANCE_MS + 60_000 }, 'forMs', /more than 7 days/],
    ['a negative duration', { forMs: -5 }, 'forMs', /in the past/],
    ['until as text', { until: 'tomorrow' }, 'until', /ms since the epoch/],
    ['a message too long', { forMs: 60_000, message: 'x'.repeat(1001) }, 'message', /at most 1000 characters/],
    ['an empty message', { forMs: 60_000, message: '  ' }, 'message', /non-empty/],
    ['a control character', { forMs: 60_000, message: 'a\u0000b' }, 'message', /control characters/],
    ['hosts not a list', { forMs: 60_000, hosts: 'a.example' }, 'hosts', /list of host names/],
    ['a bad host', { forMs: 60_000, hosts: ['a.example', 'bad_host'] }, 'hosts', /"bad_host"/],
    ['a host with a port', { forMs: 60_000, hosts: ['a.example:80'] }, 'hosts', /without a port/],
    ['no hosts', { forMs: 60_000, hosts: [] }, 'hosts', /at least one host/],
    ['too many hosts', { forMs: 60_000, hosts: Array.from({ length: 101 }, (_, i) => `h${i}.example`) }, 'hosts', /at most 100/],
    ['a bad CIDR', { forMs: 60_000, allow: ['10.0.0.0/33'] }, 'allow', /prefix length/],
    ['not an address', { forMs: 60_000, allow: ['example.com'] }, 'allow', /IP address or a CIDR/],
    ['an allow entry not text', { forMs: 60_000, allow: [7] }, 'allow', /IP address or a CIDR/],
  ]
  for (const [what, body, field, message] of cases) {
    const err = await fail(admin.request('maintenance.set', body))
    t.equal(err?.code, 'ESPRA_ERR_META_BAD_REQUEST', what)
    t.equal(err?.details?.field, field, `${what}: names ${field}`)
    t.match(err?.message, message, what)
  }
  t.same((await admin.request<{ state: State }>('maintenance.get', {})).state, null, 'nothing was set')
  t.ok(admin.connected, 'the connection stays up')
})

t.test('it ends by itself at until: the record is deleted and every node told', async (t) => {
  const { port, lines } = await startTestSeed(t)
  const pushes: { state: State }[] = []
  await nodeClient(t, port, 'fs-1', { role: 'fileserver' }, { onPush: (op, body) => op === 'maintenance' && pushes.push(body as { state: State }) })
  const admin = client(t, port)
  await admin.ready
  const { state } = await admin.request<{ state: NonNullable<State> }>('maintenance.set', { forMs: 1500 })
  await until(() => pushes.some((p) => p.state === null && pushes.indexOf(p) > 0), 10_000, 'the push that ends it')
  t.ok(Date.now() >= state.until, 'not before its time')
  t.same(pushes.at(-1), { state: null })
  t.same((await admin.request<{ state: State }>('maintenance.get', {})).state, null)
  t.equal(await createDatastoreClient(admin).get('cluster', 'maintenance'), null, 'the record is gone')
  t.ok(lines.some((l) => l.msg === 'maintenance over: its time is up'), 'logged')
})

t.test('a seed restarted on the same data directory keeps it; an expired one is dropped at load', async (t) => {
  const first = await startTestSeed(t)
  const admin = client(t, first.port)
  await admin.ready
  const { state } = await admin.request<{ state: NonNullable<State> }>('maintenance.set', { message: 'kept', forMs: 600_000, allow: ['127.0.0.1'] })
  await admin.close()
  await first.seed.close()

  const { log } = captureLog('silent')
  const second = await startSeed({ config: first.config, log })
  t.teardown(() => second.destroy())
  const again = client(t, second.port)
  await again.ready
  t.same((await again.request<{ state: State }>('maintenance.get', {})).state, state, 'the same record after the restart')
  const pushes: unknown[] = []
  await nodeClient(t, second.port, 'fs-2', { role: 'fileserver' }, { onPush: (op, body) => op === 'maintenance' && pushes.push(body) })
  await until(() => pushes.length === 1, 3000, 'the push on register')
  t.same(pushes[0], { state }, 'and a node registering gets it')

  // One whose until passed while the seed was down (written straight to the datastore, as the seed would find it).
  await createDatastoreClient(again).put('cluster', 'maintenance', { ...state, until: Date.now() - 1000 })
  await again.close()
  await second.close()
  const capture = captureLog('debug')
  const third = await startSeed({ config: first.config, log: capture.log })
  t.teardown(() => third.destroy())
  const last = client(t, third.port)
  await last.ready
  t.same((await last.request<{ state: State }>('maintenance.get', {})).state, null, 'dropped')
  t.equal(await createDatastoreClient(last).get('cluster', 'maintenance'), null, 'and deleted')
  t.ok(capture.lines.some((l) => l.msg === 'maintenance ended while the seed was down: dropped'), 'logged')
})
