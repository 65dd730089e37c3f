// A node that routes asks the seed for its table when it (re)connects without one (lib/process/seed-link.ts). The
// seed's push for the subscription can overtake that answer, and a newer table with it: seen in a rolling restart
// (issue #16), a Live node got the table from before it joined, then the one listing it, then the request's answer,
// the older table again, which it applied and answered every publish 5031 as if it were not listed. Here a real
// meta server answers `routing` with the older table after pushing the newer one: the answer must not be used.
import t from 'tap'
import { loadConfig } from '../../../lib/core/config.js'
import type { NodeState, RoutingTable } from '../../../lib/core/node-state.js'
import { createSeedLink } from '../../../lib/process/seed-link.js'
import { startMetaServer, type MetaPeer } from '../../../lib/transport/meta-server.js'
import { proxyRole } from '../../../roles/proxy/role.js'
import { captureLog, SECRET, until } from '../../helpers/meta.js'

const older: RoutingTable = { region: 'local', version: 1, nodes: [] }
const newer: RoutingTable = { region: 'local', version: 2, nodes: [{ id: 'live-a', address: '127.0.0.1', port: 1 }] }

t.test("the answer to the node's routing request, older than a push that overtook it, is not applied", async (t) => {
  let pushedFirst: boolean | null = null
  const server = await startMetaServer({
    host: '127.0.0.1', port: 0, secret: SECRET, seedId: 'seed', maxFrame: 64 * 1024, log: captureLog('silent').log,
    handlers: new Map<string, (body: unknown, peer: MetaPeer) => unknown>([
      ['register', () => ({})],
      ['subscribe', () => ({})],
      ['ping', () => ({})],
      // The table as it was when the request was read, answered after the newer one went out as a push.
      ['routing', (_body, peer) => {
        pushedFirst = peer.session.send('routing', newer)
        return older
      }],
    ]),
    messages: new Map([['heartbeat', () => undefined]]),
  })
  t.teardown(() => server.destroy())

  const config = loadConfig({ flags: { role: 'proxy', nodeId: 'proxy-1', seed: `127.0.0.1:${server.port}`, bind: '127.0.0.1', advertise: '127.0.0.1' }, env: { ESPRA_SECRET: SECRET } })
  let state: NodeState = { draining: false, childrenAlive: 0, childrenWanted: 0, seedConnected: false, build: null, crashLooping: [], routing: null }
  const applied: number[] = []
  const { log, lines } = captureLog('info')
  const link = createSeedLink({
    config, role: proxyRole, log, startedAt: Date.now(), state: () => state,
    load: () => ({ connections: 0, rps: 0, rssBytes: 0, lagMs: 0 }), onChange: () => {},
    onPush: (op, body) => {
      if (op !== 'routing') return
      applied.push((body as RoutingTable).version)
      state = { ...state, routing: body as RoutingTable }
    },
  })
  t.teardown(() => link.close())

  await until(() => lines.some((l) => l.msg === 'registered with the seed'), 5000, 'the node to register')
  t.equal(pushedFirst, true, 'the seed pushed the newer table before answering')
  t.same(applied, [2], 'only the pushed table was applied')
  t.equal(state.routing?.version, 2, 'the node keeps the newer table')
})
