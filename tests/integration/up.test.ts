import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { BIN, childPids, pidAlive, ROLES, runCli, startUp, waitFor } from '../helpers/up.js'

interface Health {
  ok: boolean
  role: string
  node: string
  routing?: { version: number; nodes: { id: string }[] }
}

async function health(port: number): Promise<{ status: number; body: Health }> {
  const res = await fetch(`http://127.0.0.1:${port}/_espra/health`)
  return { status: res.status, body: (await res.json()) as Health }
}

t.test('up starts every role, admin sees them, a dead live node leaves routing, Ctrl-C stops everything', async (t) => {
  const cluster = await startUp(t)
  const stateDir = join(cluster.dir, '.espra')
  t.equal(statSync(join(stateDir, 'secret')).mode & 0o777, 0o600, 'secret file is 0600')
  for (const role of ROLES) t.match(cluster.output(), `http://127.0.0.1:${cluster.port(role)}`, `prints where ${role} listens`)

  // admin finds the cluster from the state directory, with no flags
  const listed = await waitFor('all nodes registered', async () => {
    const r = await runCli(['admin', 'nodes', '--json'], { cwd: cluster.dir })
    if (r.code !== 0) throw new Error(r.stderr)
    const nodes = JSON.parse(r.stdout) as Record<string, unknown>[]
    return nodes.length === ROLES.length && nodes.every((n) => n['health'] === 'ok') && nodes
  })
  t.same(listed.map((n) => n['role']).sort(), [...ROLES].sort(), 'one node of every role')
  for (const n of listed) {
    for (const field of ['id', 'role', 'region', 'address', 'port', 'pid', 'children', 'version', 'build', 'health', 'heartbeatAgeMs', 'load']) {
      t.ok(field in n, `${n['role']} has ${field}`)
    }
    t.equal(n['region'], 'us-1')
    t.equal(n['port'], cluster.port(n['role'] as (typeof ROLES)[number]))
    t.ok((n['children'] as number) >= 1 || n['role'] === 'seed', `${n['role']} children alive`)
  }
  const status = await runCli(['admin', 'status'], { cwd: cluster.dir })
  t.equal(status.code, 0)
  t.match(status.stdout, /7 nodes \(7 ok\)/)

  // --watch keeps redrawing until Ctrl-C; with --json each redraw is one JSON array per line
  const watch = spawn(process.execPath, [BIN, 'admin', 'nodes', '--watch', '--json'], { cwd: cluster.dir })
  let watched = ''
  watch.stdout.on('data', (d) => (watched += d))
  const redraws = await waitFor('two redraws', () => {
    const lines = watched.split('\n').filter(Boolean)
    return lines.length >= 2 && lines
  })
  t.equal((JSON.parse(redraws[0]!) as unknown[]).length, ROLES.length, 'a watch redraw lists every node')
  watch.kill('SIGINT')
  t.equal(await new Promise((done) => watch.once('exit', done)), 0, 'watch stops cleanly on Ctrl-C')

  for (const role of ROLES) {
    const h = await health(cluster.port(role))
    t.equal(h.status, 200, `${role} health 200`)
    t.match(h.body, { ok: true, role })
  }

  // kill -9 the live node: the proxy's routing table loses it within 3 s
  const clusterFile = JSON.parse(readFileSync(join(stateDir, 'cluster.json'), 'utf8')) as { nodes: { role: string; pid: number }[] }
  const livePid = clusterFile.nodes.find((n) => n.role === 'live')!.pid
  const liveId = listed.find((n) => n['role'] === 'live')!['id'] as string
  const before = await waitFor('proxy has the live node', async () => {
    const h = await health(cluster.port('proxy'))
    return h.body.routing?.nodes.some((n) => n.id === liveId) && h.body.routing
  })
  const killedAt = Date.now()
  process.kill(livePid, 'SIGKILL')
  const after = await waitFor('proxy routing drops the live node', async () => {
    const h = await health(cluster.port('proxy'))
    return h.body.routing && !h.body.routing.nodes.some((n) => n.id === liveId) && h.body.routing
  }, 3000)
  t.ok(after.version > before.version, 'a newer routing version')
  t.ok(Date.now() - killedAt <= 3000, `new table reached the proxy in ${Date.now() - killedAt} ms`)

  // Ctrl-C: everything stops, nothing is left running
  const pids = clusterFile.nodes.filter((n) => n.role !== 'live').flatMap((n) => [n.pid, ...childPids(n.pid)])
  t.ok(pids.length > ROLES.length, 'nodes have children')
  cluster.proc.kill('SIGINT')
  t.equal(await cluster.exited, 0, 'up exits 0')
  await waitFor('every process gone', () => pids.every((p) => !pidAlive(p)), 5000)
  t.match(cluster.output(), 'cluster stopped')
})
