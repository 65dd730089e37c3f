// `admin rolling-restart --mode restart` on `espra-node up`: the node stops with exit status 75, `up` starts it
// again at once (no crash backoff, its own line), and it comes back in service without anyone undraining it.
import t from 'tap'
import type { NodeView } from '../../lib/transport/meta-shapes.js'
import { health } from '../helpers/cluster.js'
import { runCli, startUp } from '../helpers/up.js'

t.test('under up: restart mode stops the Live node (exit 75), up starts it again, it is back ok and undrained', async (t) => {
  const cluster = await startUp(t, ['--no-sample-app'])
  const cli = (...args: string[]) => runCli(['admin', ...args], { cwd: cluster.dir })
  const before = (JSON.parse((await cli('nodes', '--json')).stdout) as NodeView[]).find((n) => n.role === 'live')!

  const run = await cli('rolling-restart', '--role', 'live', '--mode', 'restart', '--grace', '0', '--timeout', '60s')
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, new RegExp(`^\\[1/1\\] ${before.id}: restarted \\(pid ${before.pid} -> \\d+\\), undrained, healthy \\([\\d.]+s\\)$`, 'm'))
  t.match(run.stdout, /^rolling restart of 1 live node\(s\) done: 1 restarted, 0 failed, in [\d.]+s\n$/)
  t.match(cluster.output(), new RegExp(`live node \\(pid ${before.pid}\\) stopped for a restart \\(exit 75, a restart order\\) after [\\d.]+s; starting it again\\n`), 'up says why it starts it again')
  t.notMatch(cluster.output(), /live node \(pid \d+\) exited with code/, 'not treated as a crash')

  const after = (JSON.parse((await cli('nodes', '--json')).stdout) as NodeView[]).find((n) => n.role === 'live')!
  t.not(after.pid, before.pid, 'a new process')
  t.match(after, { id: before.id, health: 'ok', drain: null })
  t.equal((await health(cluster.port('live'))).status, 200)
  t.notMatch((await cli('status')).stdout, /drained/, 'admin status shows no drained node')
})
