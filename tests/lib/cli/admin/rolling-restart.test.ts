// The flags of `admin rolling-restart`, checked once before the seed is asked anything: each bad value
// is refused with ESPRA_ERR_CONFIG_INVALID naming the option and what is allowed (the CLI exits 2).
// Then the command against a real seed whose node peers answer node.reload: batches, --min-healthy,
// the first failure stopping the run.
import t, { type Test } from 'tap'
import { adminRollingRestart, planOf, type RollingRestartFlags } from '../../../../lib/cli/admin/rolling-restart.js'
import type { MetaClient } from '../../../../lib/transport/meta-client.js'
import type { NodeView } from '../../../../lib/transport/meta-shapes.js'
import { heartbeat, nodeInfo, SECRET } from '../../../helpers/meta.js'
import { waitFor } from '../../../helpers/up.js'
import { client, nodeClient, startTestSeed } from '../../../helpers/seed.js'

const refusal = (flags: RollingRestartFlags) => {
  try {
    planOf(flags)
    return null
  } catch (err) {
    return err as { code: string; message: string; details?: { option?: string } }
  }
}

t.test('defaults: reload mode, batch 1, no --min-healthy, 120 s per node, every region; restart mode: grace 20 s', async (t) => {
  t.same(planOf({ role: 'app' }), { role: 'app', region: null, mode: 'reload', graceMs: null, batch: 1, minHealthy: null, timeoutMs: 120_000 })
  t.same(planOf({ role: 'live', region: 'eu-1', batch: '3', minHealthy: '2', timeout: '2m', mode: 'reload' }), { role: 'live', region: 'eu-1', mode: 'reload', graceMs: null, batch: 3, minHealthy: 2, timeoutMs: 120_000 })
  t.same(planOf({ role: 'app', mode: 'restart' }), { role: 'app', region: null, mode: 'restart', graceMs: 20_000, batch: 1, minHealthy: null, timeoutMs: 120_000 })
  t.same(planOf({ role: 'app', mode: 'restart', grace: '0', timeout: '10m' }), { role: 'app', region: null, mode: 'restart', graceMs: 0, batch: 1, minHealthy: null, timeoutMs: 600_000 })
})

t.test('bad flags name the option and what is allowed', async (t) => {
  const cases: [RollingRestartFlags, string, RegExp][] = [
    [{}, '--role', /^--role: required: one of proxy, live, fileserver, app, mail, admin$/],
    [{ role: 'nope' }, '--role', /^--role: must be one of seed, proxy, live, fileserver, app, mail, admin$/],
    [{ role: 'seed' }, '--role', /^--role: the seed runs in its parent only/],
    [{ role: 'app', batch: '0' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: '1001' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: 'two' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', batch: '1.5' }, '--batch', /^--batch: must be an integer from 1 to 1000$/],
    [{ role: 'app', minHealthy: '-1' }, '--min-healthy', /^--min-healthy: must be an integer from 0 to 100000$/],
    [{ role: 'app', timeout: '5' }, '--timeout', /^--timeout: must be a duration from 1000ms to 3600000ms$/],
    [{ role: 'app', timeout: 'soon' }, '--timeout', /^--timeout: must be a duration such as/],
    [{ role: 'app', region: 'EU West' }, '--region', /^--region: lower-case letters, digits and dashes, at most 32$/],
    [{ role: 'app', mode: 'sideways' }, '--mode', /^--mode: must be one of reload, restart$/],
    [{ role: 'app', mode: '' }, '--mode', /^--mode: must be one of reload, restart$/],
    [{ role: 'app', mode: 'restart', grace: 'soon' }, '--grace', /^--grace: must be a duration such as/],
    [{ role: 'app', mode: 'restart', grace: '-1s' }, '--grace', /^--grace: must be a duration such as/],
    [{ role: 'app', mode: 'restart', grace: '2h', timeout: '1h' }, '--grace', /^--grace: must be at most 1h \(got 2h\)$/],
    [{ role: 'app', grace: '5s' }, '--grace', /^--grace: only with --mode restart \(a reload never takes the node out of service\)$/],
    [{ role: 'app', mode: 'restart', grace: '2m' }, '--timeout', /^--timeout: must be longer than --grace \(120\.0s\): it bounds the whole restart of one node, grace included$/],
  ]
  for (const [flags, option, message] of cases) {
    const err = refusal(flags)
    t.equal(err?.code, 'ESPRA_ERR_CONFIG_INVALID', JSON.stringify(flags))
    t.equal(err?.details?.option, option)
    t.match(err?.message, message)
  }
})

// Against a real seed, with node peers that answer node.reload as a node's parent does.

/** Runs the command in this process; resolves its stderr, stdout and error (null on success). */
async function run(flags: RollingRestartFlags): Promise<{ err: { code: string; message: string } | null; stderr: string; stdout: string }> {
  let stderr = ''
  let stdout = ''
  const writeErr = process.stderr.write.bind(process.stderr)
  const writeOut = process.stdout.write.bind(process.stdout)
  process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write
  process.stdout.write = ((chunk: string) => ((stdout += chunk), true)) as typeof process.stdout.write
  const before = process.env['ESPRA_SECRET']
  process.env['ESPRA_SECRET'] = SECRET
  try {
    const err = await adminRollingRestart(flags).then(() => null, (e: { code: string; message: string }) => e)
    return { err, stderr, stdout }
  } finally {
    process.stderr.write = writeErr
    process.stdout.write = writeOut
    if (before === undefined) delete process.env['ESPRA_SECRET']
    else process.env['ESPRA_SECRET'] = before
  }
}

t.test('batches in id order, the first failure stops the run and names the node; the rest is untouched', async (t) => {
  const { port } = await startTestSeed(t)
  const asked: string[] = []
  const node = async (id: string, answer: (token: string) => Record<string, unknown>) => {
    let c!: MetaClient
    c = await nodeClient(t, port, id, { role: 'app', region: 'us-1', children: 2, childrenWanted: 2 }, {
      onPush: (op, body) => {
        if (op !== 'node.reload') return
        asked.push(id)
        void c.request('node.reloaded', answer((body as { token: string }).token))
      },
    })
  }
  await node('app-a', (token) => ({ token, replaced: 2, failed: [] }))
  await node('app-b', (token) => ({ token, replaced: 1, failed: [{ child: 1, code: 'ESPRA_ERR_NODE_LISTEN', message: 'cannot listen' }] }))
  await node('app-c', (token) => ({ token, replaced: 2, failed: [] }))
  const seed = `127.0.0.1:${port}`

  const refused = await run({ role: 'app', seed, minHealthy: '3' })
  t.equal(refused.err?.code, 'ESPRA_ERR_ROLLING_MIN_HEALTHY')
  t.match(refused.err?.message, '3 of 3 app node(s) are healthy, and a batch of 1 would leave 2')
  t.same(asked, [], 'nothing asked')

  const r = await run({ role: 'app', seed, minHealthy: '2' })
  t.equal(r.err?.code, 'ESPRA_ERR_NODE_RELOAD_FAILED')
  t.match(r.err?.message, /^rolling restart stopped at node app-b: node 'app-b' could not replace its children: child 1 could not be replaced \(ESPRA_ERR_NODE_LISTEN: cannot listen\); the old child keeps serving; 1 of 3 app node\(s\) done, the rest untouched$/)
  t.same(asked, ['app-a', 'app-b'], 'app-c was never asked')
  t.match(r.stderr, /^\[1\/3\] app-a: 2 children replaced, healthy \([\d.]+s\)$/m)
  t.match(r.stderr, /^\[2\/3\] app-b: FAILED: ESPRA_ERR_NODE_RELOAD_FAILED: /m)
  t.equal(r.stdout, '', 'no summary')

  asked.length = 0
  const none = await run({ role: 'app', seed, region: 'eu-1' })
  t.equal(none.err?.code, 'ESPRA_ERR_ROLLING_NO_NODES')
  t.same(asked, [])
})

// Restart mode against a real seed, with node peers that act as a node parent and its process manager do:
// a peer under a restart order naming it deregisters and goes; a "new process" (another start time) registers.

const ARN = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/50dc6c495c0c9188'

interface FakeProcess {
  readonly startedAt: number
  /** When it first told the seed its target is `healthy` (0: not yet). */
  healthyAt: number
}

/**
 * A node id run by a fake process manager: each process registers, heartbeats (with its ELB state: `initial` for
 * `initialBeats` beats, then `healthy`) and, under a restart order that names it, deregisters and exits; the
 * manager starts the next process unless `restarts` is false. `processes` lists every process started.
 */
async function managedNode(t: Test, port: number, id: string, opts: { elb?: boolean; restarts?: boolean; initialBeats?: number } = {}) {
  const processes: FakeProcess[] = []
  const start = async (): Promise<void> => {
    const proc: FakeProcess = { startedAt: Date.now() + processes.length, healthyAt: 0 }
    processes.push(proc)
    let beats = 0
    const elb = () => (opts.elb ? { elb: { state: beats > (opts.initialBeats ?? 0) ? 'healthy' : 'initial', targetGroup: ARN } } : {})
    let c!: MetaClient
    let timer: NodeJS.Timeout | undefined
    c = client(t, port, {
      peer: { kind: 'node', id },
      onConnect: async (link) => void (await link.request('register', nodeInfo(id, { role: 'app', children: 2, childrenWanted: 2, startedAt: proc.startedAt, pid: 1000 + processes.length, ...(opts.elb ? { elb: { state: 'joining', targetGroup: ARN } } : {}) }))),
      onPush: (op, body) => {
        const order = (body as { order?: { then: string; restartOf?: number } | null }).order
        if (op !== 'drain' || order?.then !== 'restart' || order.restartOf !== proc.startedAt) return
        setTimeout(() => {
          clearInterval(timer)
          void c.request('deregister', {}).finally(() => {
            c.destroy()
            if (opts.restarts !== false) setTimeout(() => void start(), 100)
          })
        }, 50)
      },
    })
    await c.ready
    timer = setInterval(() => {
      beats++
      const body = { ...heartbeat('ok', 2), ...elb() }
      if (body.elb?.state === 'healthy' && proc.healthyAt === 0) proc.healthyAt = Date.now()
      c.send('heartbeat', body)
    }, 50)
    t.teardown(() => clearInterval(timer))
  }
  await start()
  return processes
}

t.test('restart mode: each node drained with a restart order, stopped, started again, undrained; the ELB wait holds the next node', async (t) => {
  const { port } = await startTestSeed(t)
  const seed = `127.0.0.1:${port}`
  const a = await managedNode(t, port, 'app-a', { elb: true, initialBeats: 20 })
  const b = await managedNode(t, port, 'app-b', { elb: true, initialBeats: 20 })
  const admin = client(t, port)
  await admin.ready
  await waitFor('both healthy in their target group', async () => (await admin.request<NodeView[]>('nodes', {})).every((n) => n.elb?.state === 'healthy'), 5000)

  const r = await run({ role: 'app', seed, mode: 'restart', grace: '0', timeout: '20s' })
  t.equal(r.err, null, r.stderr)
  t.equal(a.length, 2, 'app-a was started again once')
  t.equal(b.length, 2, 'app-b was started again once')
  t.match(r.stderr, /^rolling restart \(restart mode, grace 0\.0s\) of 2 app node\(s\), 1 at a time, keeping at least 0 healthy$/m)
  t.match(r.stderr, /^\[1\/2\] app-a: draining \(out of routing and its ELB target group, grace 0\.0s\), then stopping to be restarted$/m)
  // The fake manager starts the next process 100 ms after the exit: the CLI may see the gap or only the new process.
  t.match(r.stderr, /^\[1\/2\] app-a: stopped \(pid 1001\)(; waiting for its process manager to start it again| and already started again \(pid 1002\); waiting for it to be back in service)$/m)
  t.match(r.stderr, /^\[1\/2\] app-a: restarted \(pid 1001 -> 1002\), undrained, healthy, healthy in its ELB target group \([\d.]+s\)$/m)
  t.match(r.stderr, /^\[2\/2\] app-b: restarted \(pid 1001 -> 1002\), undrained, healthy, healthy in its ELB target group \([\d.]+s\)$/m)
  t.match(r.stdout, /^rolling restart of 2 app node\(s\) done: 2 restarted, 0 failed, in [\d.]+s\n$/)
  // The new app-a said `initial` for 20 beats first: app-b's order came only once app-a said `healthy`.
  t.ok(a[1]!.healthyAt > 0 && b[1]!.startedAt > a[1]!.healthyAt, 'app-b was restarted only after the new app-a was healthy in its target group')
  t.same(await admin.request('node.drains', {}), { drains: [] }, 'no order left')
  const nodes = await admin.request<NodeView[]>('nodes', {})
  t.same(nodes.map((n) => [n.id, n.startedAt, n.drain, n.elb?.state]), [['app-a', a[1]!.startedAt, null, 'healthy'], ['app-b', b[1]!.startedAt, null, 'healthy']])
})

t.test('restart mode: a node nobody starts again stops the run; its order stands, admin undrain lifts it; drained nodes are skipped', async (t) => {
  const { port } = await startTestSeed(t)
  const seed = `127.0.0.1:${port}`
  const admin = client(t, port)
  await admin.ready
  await managedNode(t, port, 'app-a', { restarts: false })
  const b = await managedNode(t, port, 'app-b')
  await managedNode(t, port, 'app-c')
  await admin.request('node.drain', { id: 'app-c', then: 'idle', graceMs: 0 })

  const r = await run({ role: 'app', seed, mode: 'restart', grace: '0', timeout: '2s' })
  t.equal(r.err?.code, 'ESPRA_ERR_ROLLING_RESTART_TIMEOUT')
  t.match(r.err?.message, /^rolling restart stopped at node app-a: node 'app-a' timed out in a rolling restart \(it did not stop, start again or become healthy in time\): not started again within 2\.0s: is it run by a process manager that restarts exit status 75 \(infra\/systemd\/espra-node@\.service, espra-node up\)\? its restart order stands: admin status shows it, admin undrain lifts it; 0 of 2 app node\(s\) done, the rest untouched$/)
  t.match(r.stderr, /^app-c: skipped: drained by an operator \(then idle\); admin undrain it first to restart it$/m)
  t.match(r.stderr, /^rolling restart \(restart mode, grace 0\.0s\) of 2 app node\(s\)/m)
  t.equal(b.length, 1, 'app-b untouched')
  t.equal(r.stdout, '')
  t.match(await admin.request('node.drains', {}), { drains: [{ id: 'app-a', then: 'restart', registered: false }, { id: 'app-c', then: 'idle', registered: true }] }, 'the order stands, visible')
  t.match(await admin.request('node.undrain', { id: 'app-a' }), { undrained: true, registered: false })
  t.match(await admin.request('node.drain', { id: 'app-b', then: 'idle', graceMs: 0 }), { registered: true })
  const none = await run({ role: 'app', seed, mode: 'restart' })
  t.equal(none.err?.code, 'ESPRA_ERR_ROLLING_NO_NODES')
  t.equal(none.err?.message, 'no app node in any region can be restarted: every one is drained by an operator (admin undrain lifts an order)')
})

t.test('reload mode waits for healthy in the ELB target group too, and names the ELB state on a timeout', async (t) => {
  const { port } = await startTestSeed(t)
  const seed = `127.0.0.1:${port}`
  // The node is `initial` in its target group (it just joined) until `beats` heartbeats after its reload (never when null).
  const node = async (id: string, beats: number | null) => {
    let reloadedAt = 0
    let healthyAt = 0
    let since = 0
    const c: MetaClient = client(t, port, {
      peer: { kind: 'node', id },
      onConnect: async (link) => void (await link.request('register', nodeInfo(id, { role: 'fileserver', children: 1, childrenWanted: 1, elb: { state: 'initial', targetGroup: ARN } }))),
      onPush: (op, body) => {
        if (op !== 'node.reload') return
        reloadedAt = Date.now()
        since = 0
        void c.request('node.reloaded', { token: (body as { token: string }).token, replaced: 1, failed: [] })
      },
    })
    await c.ready
    const timer = setInterval(() => {
      const healthy = reloadedAt > 0 && beats !== null && ++since > beats
      if (healthy && reloadedAt > 0 && healthyAt === 0) healthyAt = Date.now()
      c.send('heartbeat', { ...heartbeat('ok', 1), elb: { state: healthy ? 'healthy' : 'initial', targetGroup: ARN } })
    }, 50)
    t.teardown(() => clearInterval(timer))
    return { healthyAt: () => healthyAt }
  }
  const a = await node('files-a', 10)
  const r = await run({ role: 'fileserver', seed })
  const finished = Date.now()
  t.equal(r.err, null, r.stderr)
  t.match(r.stderr, /^\[1\/1\] files-a: 1 children replaced, healthy, healthy in its ELB target group \([\d.]+s\)$/m)
  t.ok(a.healthyAt() > 0 && finished >= a.healthyAt(), 'the run ended only after the node said healthy in its target group')

  await node('files-b', null)
  const stuck = await run({ role: 'fileserver', seed, region: 'us-1', timeout: '2s' })
  t.equal(stuck.err?.code, 'ESPRA_ERR_NODE_RELOAD_TIMEOUT')
  t.match(stuck.err?.message, `rolling restart stopped at node files-b: node 'files-b' did not finish replacing its children in time: not healthy with all children within 2.0s (health ok, 1 of 1 children, ELB target initial in ${ARN}); 1 of 2 fileserver node(s) done, the rest untouched`)
})
