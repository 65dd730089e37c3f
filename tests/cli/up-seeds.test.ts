// `espra-node up --datastore postgres://… --seeds 2` on a real PostgreSQL: both seeds up, one leads,
// `kill -9` the leader and the other takes over while the cluster keeps answering through the proxy.
// `--seeds` without a PostgreSQL datastore is refused with one line.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startPostgres } from '../helpers/postgres.js'
import { runCli, startUp, waitFor } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

interface Health {
  ok: boolean
  routing?: { version: number; nodes: { id: string }[] }
}

async function proxyHealth(port: number): Promise<{ status: number; body: Health }> {
  const res = await fetch(`http://127.0.0.1:${port}/_espra/health`, { signal: AbortSignal.timeout(5000) })
  return { status: res.status, body: (await res.json()) as Health }
}

t.test('--seeds without a PostgreSQL datastore, or a bad --seeds / --datastore: one line, nothing started', async (t) => {
  const dir = testDir('espra-up-seeds-')
  const env: NodeJS.ProcessEnv = { ...process.env, ESPRA_SECRET: '' }
  delete env['ESPRA_DATASTORE']
  const embedded = await runCli(['up', '--seeds', '2'], { cwd: dir, env })
  t.equal(embedded.code, 2)
  t.equal(embedded.stderr.trim().split('\n').length, 1, 'one line')
  t.match(embedded.stderr, /^espra-node: --seeds: 2 seeds need --datastore postgres:\/\/… \(one embedded store lives in one seed's data directory and cannot be shared\)/)
  t.same(readdirSync(dir), [], 'nothing written')
  const zero = await runCli(['up', '--seeds', '0', '--datastore', 'postgres://u:pw@127.0.0.1:1/db'], { cwd: dir, env })
  t.equal(zero.code, 2)
  t.match(zero.stderr, /^espra-node: --seeds: must be an integer from 1 to 4 \(got '0'\)/)
  const mysql = await runCli(['up', '--seeds', '2', '--datastore', 'mysql://u:secretpw@h/db'], { cwd: dir, env })
  t.equal(mysql.code, 2)
  t.match(mysql.stderr, /^espra-node: --datastore: must be embedded or postgres:\/\//)
  t.notMatch(mysql.stderr, 'secretpw')
})

t.test('two seeds on one database: one leads; kill -9 it and the other takes over while the proxy keeps answering', async (t) => {
  const postgres = await startPostgres(t)
  const url = await postgres.createDatabase('up_seeds')
  const cluster = await startUp(t, ['--datastore', url, '--seeds', '2', '--no-sample-app'])
  const out = cluster.output()
  t.comment(out.slice(out.indexOf('cluster up')))
  const base = cluster.base
  t.match(out, `starting 2 seeds (datastore postgres://espra:***@127.0.0.1:${postgres.port}/up_seeds)`)
  t.match(out, new RegExp(`^seed meta +tcp://127\\.0\\.0\\.1:${base} +seed-1, leads \\(epoch 1\\)$`, 'm'), 'the first seed leads')
  t.match(out, new RegExp(`^seed meta +tcp://127\\.0\\.0\\.1:${base + 17} +seed-2, follower$`, 'm'), 'the second is on its own meta port and follows')
  t.notMatch(out, postgres.password, 'the password is masked in what up prints')
  for (const log of readdirSync(join(cluster.dir, '.espra', 'logs'))) {
    t.notMatch(readFileSync(join(cluster.dir, '.espra', 'logs', log), 'utf8'), postgres.password, `no password in ${log}`)
  }
  const clusterFile = JSON.parse(readFileSync(join(cluster.dir, '.espra', 'cluster.json'), 'utf8')) as { seed: string; nodes: { role: string; port: number; pid: number }[] }
  t.equal(clusterFile.seed, `127.0.0.1:${base},127.0.0.1:${base + 17}`, 'admin commands are given both seeds')
  const seeds = clusterFile.nodes.filter((n) => n.role === 'seed')
  t.same(seeds.map((s) => s.port), [base + 1, base + 18])

  const status = await runCli(['admin', 'status'], { cwd: cluster.dir, env: { ...process.env, ESPRA_SECRET: '' } })
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /^leader: seed-1 at 127\.0\.0\.1:\d+ \(epoch 1/m)
  const proxyPort = cluster.port('proxy')
  const before = await waitFor('the proxy has a routing table', async () => {
    const h = await proxyHealth(proxyPort)
    return h.status === 200 && h.body.routing !== undefined && h.body.routing.nodes.length > 0 && h.body.routing
  }, 30_000)

  const killedAt = Date.now()
  process.kill(seeds[0]!.pid, 'SIGKILL')
  // The proxy answers all through the failover, with its last routing table.
  const leader = await waitFor('seed-2 leads', async () => {
    const h = await proxyHealth(proxyPort)
    if (h.status !== 200) throw new Error(`proxy health ${h.status}`)
    const r = await runCli(['admin', 'status'], { cwd: cluster.dir, env: { ...process.env, ESPRA_SECRET: '' } })
    return /^leader: seed-2 at .*\(epoch (\d+)/m.exec(r.stdout)?.[1]
  }, 60_000)
  t.equal(Number(leader), 2, 'seed-2 took the lease with the next epoch')
  t.comment(`seed-2 seen leading by admin status ${Date.now() - killedAt} ms after the kill (includes the CLI's own start-up)`)
  const after = await waitFor('the proxy gets a table from the new leader', async () => {
    const h = await proxyHealth(proxyPort)
    if (h.status !== 200) throw new Error(`proxy health ${h.status}`)
    return h.body.routing !== undefined && h.body.routing.version !== before.version && h.body.routing.nodes.length > 0 && h.body.routing
  }, 60_000)
  t.ok(after.nodes.length >= before.nodes.length - 1, 'the nodes are routed again')
  t.comment(`the proxy had a table from the new leader ${Date.now() - killedAt} ms after the kill (after the new leader's grace)`)
})
