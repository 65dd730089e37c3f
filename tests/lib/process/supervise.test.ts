// Supervision with real processes: crashes, crash loops, RSS replacement, and no orphans.
import t from 'tap'
import { get, health, pidAlive, startNode, waitFor } from '../../helpers/cluster.js'

t.test('a child killed with SIGKILL is replaced and health is 200 again', async (t) => {
  const node = await startNode(t, 'live', { children: 2 })
  const [victim, survivor] = node.childPids()
  t.ok(victim && survivor, 'two children listening')
  process.kill(victim!, 'SIGKILL')
  await node.waitForLog((l) => l.msg === 'child 0 crashed' || l.msg === 'child 1 crashed', 'crash logged')
  const crash = node.logs.find((l) => /crashed$/.test(l.msg))!
  t.equal(crash['signal'], 'SIGKILL')
  t.equal(crash.childPid, victim)
  const replacement = await node.waitForLog(
    (l) => /^child \d+ listening$/.test(l.msg) && l.child === crash.child && l.childPid !== victim,
    'replacement listening',
  )
  t.not(replacement.childPid, victim, 'new pid')
  t.not(replacement.childPid, survivor)
  await waitFor('health 200 with two children', async () => {
    const h = await health(node.port)
    return h.status === 200 && (h.body['children'] as { alive: number }).alive === 2 && h
  })
  const metrics = await get(node.metricsPort, '/metrics')
  t.match(metrics.body, /^espra_node_child_crashes_total\{process="parent"\} 1$/m, 'crash counted')
  t.same(await node.stop(), { code: 0, signal: null }, 'stops cleanly')
})

/** SIGKILLs child 0 each time it listens, `times` times; resolves the pids killed. */
async function crashChild0(node: Awaited<ReturnType<typeof startNode>>, times: number, killed = new Set<number>()): Promise<Set<number>> {
  for (let i = 0; i < times; i++) {
    const pid = await waitFor(`child 0 listening (round ${killed.size})`, () =>
      node.logs.find((l) => l.msg === 'child 0 listening' && !killed.has(l.childPid!))?.childPid,
    )
    killed.add(pid)
    process.kill(pid, 'SIGKILL')
    await waitFor(`crash ${killed.size} logged`, () => node.logs.find((l) => l.msg === 'child 0 crashed' && l.childPid === pid))
  }
  return killed
}

t.test('regression: a crash-looping child keeps being restarted with backoff; health and metrics say degraded meanwhile', async (t) => {
  const node = await startNode(t, 'app', { children: 2 })
  const killed = await crashChild0(node, 5)
  const loop = await node.waitForLog((l) => l.level === 'error' && /crash-looping/.test(l.msg), 'crash loop logged')
  t.equal(loop['code'], 'ESPRA_ERR_CHILD_CRASHLOOP')
  const h = await waitFor('degraded health', async () => {
    const answer = await health(node.port)
    return answer.body['health'] === 'degraded' && answer
  })
  t.equal(h.status, 200, 'the other child still serves')
  t.same((h.body['children'] as { crashLooping: number[] }).crashLooping, [0])
  t.match((await get(node.metricsPort, '/metrics')).body, /^espra_node_children_crash_looping\{process="parent"\} 1$/m, 'the metrics gauge alerts')

  // Restarted all the same, later each time (the delay doubles, capped).
  const sixth = await node.waitForLog((l) => l.msg === 'child 0 listening' && !killed.has(l.childPid!), 'a sixth child 0', 20_000)
  const delays = node.logs.filter((l) => l.msg === 'restarting child 0 in ' + String(l['delayMs']) + 'ms').map((l) => l['delayMs'] as number)
  t.equal(delays.length, 5, 'a restart scheduled after every crash')
  t.ok(delays.every((d, i) => i === 0 || d > delays[i - 1]!), `growing delays: ${delays.join(', ')}`)
  const again = await waitFor('two children alive, still degraded', async () => {
    const answer = await health(node.port)
    return (answer.body['children'] as { alive: number }).alive === 2 && answer
  })
  t.equal(again.body['health'], 'degraded', 'crash-looping until the new child has stayed up a while')

  // It crashes again: restarted again, with a longer delay.
  killed.add(sixth.childPid!)
  process.kill(sixth.childPid!, 'SIGKILL')
  await node.waitForLog((l) => l.msg === 'child 0 listening' && !killed.has(l.childPid!), 'a seventh child 0', 20_000)
  const last = node.logs.filter((l) => /^restarting child 0 in /.test(l.msg)).at(-1)!
  t.ok((last['delayMs'] as number) > delays.at(-1)!, 'a longer delay')
  t.equal(last['crashLooping'], true)

  // An operator's SIGHUP gives the slot a fresh start.
  node.proc.kill('SIGHUP')
  await node.waitForLog((l) => l.msg === 'all children replaced', 'reload done', 60_000)
  const after = await health(node.port)
  t.equal(after.body['health'], 'ok', 'healthy again after SIGHUP')
  t.match((await get(node.metricsPort, '/metrics')).body, /^espra_node_children_crash_looping\{process="parent"\} 0$/m)
  t.same(await node.stop(), { code: 0, signal: null })
})

t.test('a child over --max-child-rss is replaced: new child first, then the old one drains', async (t) => {
  const node = await startNode(t, 'fileserver', { children: 1, 'max-child-rss': '10MB' })
  const first = node.childPids()[0]!
  const line = await node.waitForLog((l) => /is over --max-child-rss/.test(l.msg), 'rss replacement', 20_000)
  t.equal(line.childPid, first)
  t.ok((line['rssBytes'] as number) > 10 * 1024 * 1024)
  t.ok(node.logs.some((l) => l.level === 'warn' && /fresh child is already over/.test(l.msg)), 'warns the limit is too low')
  const replaced = await node.waitForLog((l) => l.msg === 'child 0 replaced (max-child-rss)', 'replaced')
  t.equal(replaced['oldPid'], first)
  await node.waitForLog((l) => l.msg === 'child 0 exited' && l.childPid === first, 'old child exits after draining')
  t.notOk(node.logs.some((l) => /crashed/.test(l.msg)), 'an intended exit is not a crash')
  t.equal((await health(node.port)).status, 200)
  await node.stop()
})

t.test('children exit when their parent is killed with SIGKILL', async (t) => {
  const node = await startNode(t, 'mail', { children: 2 })
  const children = node.childPids()
  t.equal(children.length, 2)
  node.proc.kill('SIGKILL')
  await node.exited
  await waitFor('children gone', () => children.every((pid) => !pidAlive(pid)), 5000)
  t.pass('no orphans')
})
