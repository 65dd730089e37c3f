// `espra-node up` as a process manager on any machine: small defaults whatever the core count,
// a line per node as it becomes healthy, the whole cluster well under 1 GB, ports only in its
// documented range (checked before anything starts), and a node that dies started again.
import t from 'tap'
import { createServer, type Server } from 'node:net'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { UP_PORT_SPAN } from '../../lib/cli/up-ports.js'
import { childPids, freePortBlock, listeningPorts, pidAlive, ROLES, runCli, startUp, treeMemory, waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

const GB = 1024 ** 3

interface ClusterJson {
  nodes: { role: string; pid: number; port: number; metricsPort: number }[]
}

t.test('up with its own defaults: one child per node, ready lines, under 1 GB, ports in range, a killed node restarts', async (t) => {
  const cluster = await startUp(t, ['--no-sample-app'], { defaults: true })
  const out = cluster.output()
  for (const role of ROLES) {
    t.match(out, new RegExp(`^${role} +ready on http://127\\.0\\.0\\.1:${cluster.port(role)} \\(pid \\d+, [\\d.]+s\\)$`, 'm'), `a ready line for ${role}`)
  }
  t.match(out, /1 child each/)
  const file = (): ClusterJson => JSON.parse(readFileSync(join(cluster.dir, '.espra', 'cluster.json'), 'utf8')) as ClusterJson
  for (const n of file().nodes) {
    t.equal(childPids(n.pid).length, n.role === 'seed' ? 0 : 1, `${n.role}: ${n.role === 'seed' ? 'no' : 'one'} child`)
  }

  // Memory: PSS counts pages shared between processes (the node binary) once; RSS counts them in every process.
  const memory = treeMemory(cluster.proc.pid!)
  t.comment(`up cluster: ${memory.processes} processes, PSS ${(memory.pss / 2 ** 20).toFixed(0)} MB, summed RSS ${(memory.rss / 2 ** 20).toFixed(0)} MB`)
  t.ok(memory.processes <= 2 * ROLES.length, `${memory.processes} processes`)
  t.ok(memory.pss > 0 && memory.pss < GB, `the cluster takes under 1 GB (PSS ${(memory.pss / 2 ** 20).toFixed(0)} MB)`)

  // Every listening port of the whole tree is inside base .. base+15.
  const ports = listeningPorts(cluster.proc.pid!)
  t.ok(ports.length >= 2 * ROLES.length + 1, `listens on ${ports.join(',')}`)
  t.same(ports.filter((p) => p < cluster.base || p >= cluster.base + UP_PORT_SPAN), [], 'nothing outside the range')

  // kill -9 a node's parent: up starts it again and it turns healthy.
  const before = file().nodes.find((n) => n.role === 'fileserver')!
  process.kill(before.pid, 'SIGKILL')
  await waitFor('up reports the death', () => /fileserver node \(pid \d+\) was killed \(SIGKILL\) after [\d.]+s; restarting in 1\.0s/.test(cluster.output()), 10_000)
  const after = await waitFor('fileserver running again under a new pid', () => {
    const n = file().nodes.find((n) => n.role === 'fileserver')!
    return n.pid !== before.pid && pidAlive(n.pid) && n
  }, 20_000)
  await waitFor('fileserver healthy again', async () => (await fetch(`http://127.0.0.1:${after.port}/_espra/health`)).status === 200, 30_000)
  await waitFor('a ready-again line', () => /^fileserver ready again on http:\/\/127\.0\.0\.1:\d+ \(pid \d+/m.test(cluster.output()), 30_000)
  const listed = await waitFor('admin sees the fileserver again', async () => {
    const r = await runCli(['admin', 'nodes', '--json'], { cwd: cluster.dir })
    const nodes = r.code === 0 ? (JSON.parse(r.stdout) as { role: string; pid: number; health: string }[]) : []
    return nodes.find((n) => n.role === 'fileserver' && n.pid === after.pid && n.health === 'ok')
  }, 20_000)
  t.ok(listed, 'registered with the seed under its new pid')

  cluster.proc.kill('SIGINT')
  t.equal(await cluster.exited, 0, 'up exits 0')
  await waitFor('the restarted node stopped too', () => !pidAlive(after.pid), 10_000)
})

t.test('up checks every port it will bind before starting anything; a taken one names --port-base', async (t) => {
  const base = await freePortBlock()
  const dir = testDir('espra-up-ports-')
  // The Live link port (base+15): before, up bound it only when the live node started, as base+3+2000.
  const held: Server = await new Promise((resolve) => {
    const s = createServer()
    s.listen({ host: '127.0.0.1', port: base + 15 }, () => resolve(s))
  })
  t.teardown(() => held.close())
  const r = await runCli(['up', '--port-base', String(base)], { cwd: dir, env: { ...process.env, ESPRA_SECRET: '' } })
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `--port-base: port ${base + 15} (live link port) already in use; up needs ${base}-${base + 16} free`)
  t.notOk(existsSync(join(dir, '.espra')), 'nothing was written or started')
})
