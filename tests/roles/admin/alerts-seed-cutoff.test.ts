// `seed-link` when no seed answers at all (docs/alerts.md, "No seed reachable"): the alert engine's lease is behind the
// seeds, so no engine can run; the admin node says so itself, once, without an epoch, and resolves once a seed is back.
// A real seed stopped with SIGKILL and started again on its data dir and meta port; a real webhook receiver.
import t from 'tap'
import { freePort, startNode, waitFor } from '../../helpers/cluster.js'
import { FAST, killHard, startAdmin, webhookReceiver } from '../../helpers/alert-cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

t.test('no seed reachable: one seed-link from the admin node, then one resolve when the seed is back', async (t) => {
  const metaPort = await freePort()
  const seedFlags = { 'meta-port': metaPort, 'seed-grace': '0', 'data-dir': testDir('espra-node-test-cutoff-'), ...FAST }
  const seed = await startNode(t, 'seed', seedFlags)
  const hook = await webhookReceiver(t)
  const admin = await startAdmin(t, `127.0.0.1:${metaPort}`, hook.url, { 'alert-lease': '1s', 'node-id': 'admin-cut' })
  await admin.waitForLog((l) => l.msg === 'alerts restored; evaluating', 'the admin node runs the engine')

  await killHard(seed)
  await waitFor('a seed-link notification', () => hook.taken().some((n) => n.alert.rule === 'seed-link'), 30_000)
  const opened = hook.taken().filter((n) => n.alert.rule === 'seed-link')
  t.equal(opened.length, 1, 'one notification')
  t.match(opened[0], { event: 'opened', alert: { rule: 'seed-link', node: 'admin-cut', state: 'open', summary: /admin node admin-cut has reached no seed/ } })
  t.equal(opened[0]!.epoch, undefined, 'no engine lease epoch: nothing can fence it')

  const again = await startNode(t, 'seed', { ...seedFlags, 'seed-grace': '0' })
  t.teardown(() => again.stop())
  await waitFor('the resolve', () => hook.taken().some((n) => n.alert.rule === 'seed-link' && n.event === 'resolved'), 30_000)
  const all = hook.taken().filter((n) => n.alert.rule === 'seed-link')
  t.same(all.map((n) => n.event), ['opened', 'resolved'], 'one open, one resolve, nothing more')
  t.equal(all[1]!.alert.id, all[0]!.alert.id, 'the resolve names the same alert')
  t.equal(all[1]!.alert.state, 'resolved')
})
