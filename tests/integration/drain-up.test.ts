// `admin drain --then stop` of a node of `espra-node up`: the node exits 0, `up` (a process manager that starts
// every node that exits) starts it again, and it comes back drained and idle, counted as ready, not killed in a loop.
import t from 'tap'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { health } from '../helpers/cluster.js'
import { runCli, startUp, waitFor } from '../helpers/up.js'

t.test('under up: drain --then stop, the node is started again drained and idle; undrain brings it back', async (t) => {
  const cluster = await startUp(t, ['--no-sample-app'])
  const cli = (...args: string[]) => runCli(['admin', ...args], { cwd: cluster.dir })
  const nodes = JSON.parse((await cli('nodes', '--json')).stdout) as NodeView[]
  const live = nodes.find((n) => n.role === 'live')!

  const drained = await cli('drain', live.id, '--grace', '0')
  t.equal(drained.code, 0, drained.stderr)
  t.match(drained.stdout, new RegExp(`${live.id}: stopped`))
  await waitFor('up reports the exit', () => /live node \(pid \d+\) exited with code 0 after/.test(cluster.output()), 30_000)
  await waitFor('a ready-again line', () => /^live +ready again on /m.test(cluster.output()), 60_000)
  const back = await health(cluster.port('live'))
  t.equal(back.status, 503)
  t.equal(back.body['health'], 'draining', 'started again, drained')
  t.notMatch(cluster.output(), /live node \(pid \d+\) was killed/, 'up did not kill it for not being healthy')

  const undrained = await cli('undrain', live.id)
  t.equal(undrained.code, 0, undrained.stderr)
  t.equal((await health(cluster.port('live'))).status, 200)
})
