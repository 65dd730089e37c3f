// `admin rolling-restart --role <role>` (reload mode) on `up`: every node of the role gets all new
// children while continuous keep-alive load and Live publishes through the proxy fail nothing, with
// progress on stderr and a summary on stdout; bad flags, unknown roles, no nodes and a --min-healthy
// that cannot be honoured are refused with one precise line before anything is restarted.
import t from 'tap'
import { childPids, runCli, startUp, waitFor, type UpCluster } from '../helpers/up.js'
import { checkRestartUnderLoad, loadToken, upNodes } from '../helpers/reload-load.js'

const cluster: UpCluster = await startUp(t)
await waitFor('the sample app served by the app node', async () => (await fetch(`http://127.0.0.1:${cluster.port('app')}/`)).status === 200, 30_000)
await waitFor('the sample app assets on the fileserver', async () => (await fetch(`http://127.0.0.1:${cluster.port('fileserver')}/app/public/style.css`)).status === 200, 30_000)
const token = await loadToken(cluster)
const admin = (...args: string[]) => runCli(['admin', 'rolling-restart', ...args], { cwd: cluster.dir })

t.test('refused before anything restarts: one line naming the problem', async (t) => {
  const pidsBefore = new Map((await upNodes(cluster)).map((n) => [n.role, childPids(n.pid).join()]))
  // Every flag's checks are in tests/lib/cli/admin/rolling-restart.test.ts; here, the exit code of one, and what needs the seed.
  const cases: [string[], number, RegExp][] = [
    [['--role', 'app', '--batch', '0'], 2, /^espra-node: --batch: must be an integer from 1 to 1000$/],
    [['--role', 'app', '--region', 'eu-9'], 1, /ESPRA_ERR_ROLLING_NO_NODES: no app node in region eu-9 can be restarted: none is registered/],
    [['--role', 'app', '--min-healthy', '2'], 1, /ESPRA_ERR_ROLLING_MIN_HEALTHY: a rolling restart would go below --min-healthy 2: it is more than the 1 app node\(s\), so it can never be honoured/],
    [['--role', 'app', '--min-healthy', '1'], 1, /ESPRA_ERR_ROLLING_MIN_HEALTHY: a rolling restart would go below --min-healthy 1: 1 of 1 app node\(s\) are healthy, and a batch of 1 would leave 0/],
  ]
  for (const [args, code, message] of cases) {
    const r = await admin(...args)
    t.equal(r.code, code, `${args.join(' ')}: exit ${code}`)
    t.match(r.stderr.trim(), message, args.join(' '))
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }
  const pidsAfter = new Map((await upNodes(cluster)).map((n) => [n.role, childPids(n.pid).join()]))
  t.same(pidsAfter, pidsBefore, 'no child was replaced')
})

for (const role of ['app', 'fileserver', 'proxy', 'live']) {
  t.test(`admin rolling-restart --role ${role} under load: every child new, 0 failed requests, 0 failed publishes`, async (t) => {
    const node = (await upNodes(cluster)).find((n) => n.role === role)!
    const before = childPids(node.pid)
    let run: Awaited<ReturnType<typeof admin>> | undefined
    await checkRestartUnderLoad(t, cluster, role, token, 'rolling-restart', async () => {
      run = await admin('--role', role, '--min-healthy', '0')
    })
    t.equal(run!.code, 0, run!.stderr)
    t.match(run!.stderr, new RegExp(`^rolling restart \\(reload mode\\) of 1 ${role} node\\(s\\), 1 at a time, keeping at least 0 healthy$`, 'm'))
    t.match(run!.stderr, new RegExp(`^\\[1/1\\] ${node.id}: 1 children replaced, healthy \\([\\d.]+s\\)$`, 'm'), 'a progress line per node')
    t.match(run!.stdout, new RegExp(`^rolling restart of 1 ${role} node\\(s\\) done: 1 reloaded, 0 failed, in [\\d.]+s$`, 'm'), 'the summary')
    const after = childPids(node.pid)
    t.equal(after.length, before.length, 'as many children as before')
    t.same(after.filter((p) => before.includes(p)), [], 'every child is new')
    const listed = (await upNodes(cluster)).find((n) => n.id === node.id)!
    t.match(listed, { health: 'ok', pid: node.pid, children: listed.childrenWanted }, 'registered, healthy, every child')
  })
}
