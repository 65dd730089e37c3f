// Against real processes (a seed, an admin node, proxy nodes) and a real webhook receiver: a node killed is
// exactly one alert and, back, exactly one resolve; the webhook answering 500 at first is retried until it
// takes them, and its state (last error, last success, nothing pending) is in the datastore for the API;
// every request carries a signature that verifies over the raw body; probe histories are there too; with
// --alert-email the notification is queued as outbound mail.
import t from 'tap'
import { signatureProblem } from '../../../lib/alerts/signature.js'
import { listAlerts, listProbeHistories, listSinkStatuses } from '../../../lib/alerts/store.js'
import { waitFor } from '../../helpers/cluster.js'
import { killHard, seedView, startAdmin, startSeed, startWatched, WEBHOOK_KEY, webhookReceiver } from '../../helpers/alert-cluster.js'

t.test('kill a node: one alert; bring it back: one resolve; a failing webhook is retried; signatures verify', async (t) => {
  const { metaPort, address } = await startSeed(t)
  const hook = await webhookReceiver(t, 2)
  const view = await seedView(t, metaPort)
  const victim = await startWatched(t, address, 'proxy-a')
  await startWatched(t, address, 'proxy-b')
  const admin = await startAdmin(t, address, hook.url, { 'alert-email': 'oncall@example.com', 'alert-email-from': 'espra@example.com' })

  // The admin node probes both (and itself) and writes what it saw for the API.
  await waitFor('probe histories of both nodes', async () => {
    const h = await listProbeHistories(view.datastore)
    return ['proxy-a', 'proxy-b'].every((id) => h.find((x) => x.node === id)?.results.at(-1)?.ok === true) || null
  })
  const [history] = await listProbeHistories(view.datastore, 'proxy-a')
  t.match(history, { node: 'proxy-a', address: '127.0.0.1', port: victim.port, failures: 0 })
  t.match(history!.results.at(-1), { status: 200, ok: true, health: 'ok', error: null })
  t.ok(history!.results.length <= 30, 'bounded by --probe-history')

  await killHard(victim)
  const opened = await waitFor('the opened notification taken after two 500s', () => hook.taken().find((n) => n.event === 'opened') ?? undefined, 30_000)
  t.match(opened.alert, { rule: 'node-down', node: 'proxy-a', nodes: ['proxy-a'], state: 'open', grouped: false })
  t.match(opened.alert.summary, /^node proxy-a \(proxy, 127\.0\.0\.1:\d+\) down: /)
  t.same(hook.deliveries.slice(0, 3).map((d) => d.status), [500, 500, 200], 'retried after each 500')
  t.same(new Set(hook.deliveries.slice(0, 3).map((d) => d.raw)).size, 1, 'the same notification each time')

  const sinks = await waitFor('the sink state written', async () => (await listSinkStatuses(view.datastore)).find((s) => s.kind === 'webhook' && s.sent === 1) ?? undefined)
  t.match(sinks, { name: /^webhook 1 http:\/\/127\.0\.0\.1:\d+$/, kind: 'webhook', pending: 0, dropped: 0, lastError: { message: 'HTTP 500' } })
  t.ok(sinks.lastSuccessAt !== null && sinks.lastSuccessAt >= sinks.lastError!.at, 'the success came after the error')

  // The same notification went on the outbound mail queue (a mail node would deliver it; none runs here).
  const mail = await waitFor('the alert mail queued', async () => {
    const page = await view.datastore.list('mailOutbound', { prefix: 'out/' })
    return page.entries.map((e) => e.value as { subject: string; from: string; domains: Record<string, { pending: string[] }> }).find((r) => r.subject.startsWith('[espra] OPENED node-down'))
  })
  t.equal(mail.from, 'espra@example.com')
  t.same(mail.domains['example.com']?.pending, ['oncall@example.com'])
  t.match(mail.subject, /^\[espra\] OPENED node-down: node proxy-a /)
  const email = await waitFor('the email sink state', async () => (await listSinkStatuses(view.datastore)).find((s) => s.kind === 'email' && s.sent >= 1))
  t.match(email, { name: 'email oncall@example.com', pending: 0, dropped: 0, lastError: null })

  await startWatched(t, address, 'proxy-a', victim.port)
  const resolved = await waitFor('the resolved notification', () => hook.taken().find((n) => n.event === 'resolved') ?? undefined, 30_000)
  t.equal(resolved.alert.id, opened.alert.id, 'the same incident')
  t.equal(resolved.alert.state, 'resolved')
  // Five more probe rounds (each evaluates the rules) with the node back, then count.
  const back = resolved.alert.resolvedAt!
  await waitFor('five more probe rounds', async () => ((await listProbeHistories(view.datastore, 'proxy-a'))[0]!.results.filter((r) => r.ok && r.at > back).length >= 5) || undefined)
  t.same(hook.taken().map((n) => [n.event, n.alert.rule, n.alert.node]), [['opened', 'node-down', 'proxy-a'], ['resolved', 'node-down', 'proxy-a']], 'exactly one alert and one resolve')

  const page = await listAlerts(view.datastore)
  t.equal(page.alerts.length, 1)
  t.match(page.alerts[0], { id: opened.alert.id, state: 'resolved', notified: { opened: true, resolved: true } })
  t.same((await listAlerts(view.datastore, { state: 'open' })).alerts, [])

  for (const d of hook.deliveries) {
    t.equal(d.headers['content-type'], 'application/json')
    t.equal(signatureProblem(WEBHOOK_KEY, d.raw, { signature: d.headers['x-espra-signature'] as string, timestamp: d.headers['x-espra-timestamp'] as string }), null, 'signature verifies')
  }
  t.ok(admin.logs.some((l) => l.msg.startsWith('alert opened: node proxy-a')), 'the admin node logs it too')
})
