// The dashboard in headless Chromium (Debian's, driven by playwright-core) against a real cluster: a seed, an admin
// node probing fast, a Live node and two proxies (one in another region). Log in with the operator token; see every
// registered node, and a figure change on screen with no reload (SSE streams opened on the admin node raise its
// connections); a hostile build message shown as text; roll back a build (cancel first, then confirm) and follow it to
// live; retry one dead letter and delete another; kill a proxy, see its node-down alert and silence it from the page.
// Saves a screenshot of the overview (copied to docs/dashboard.png with ESPRA_DASHBOARD_SCREENSHOT=1).
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import t from 'tap'
import { createMetaTaskQueue } from '../../../lib/tasks/queue-meta.js'
import { newTask } from '../../../lib/tasks/task.js'
import { FAST, startAdminApi } from '../../helpers/admin-api.js'
import { HAVE_CHROMIUM, MISSING_CHROMIUM, launchBrowser } from '../../helpers/browser.js'
import { SECRET, startNode, waitFor } from '../../helpers/cluster.js'
import { killHard } from '../../helpers/alert-cluster.js'
import { client } from '../../helpers/seed.js'
import { runCli } from '../../helpers/up.js'
import { testDir } from '../../helpers/temp-dir.js'

if (!HAVE_CHROMIUM) {
  t.fail(MISSING_CHROMIUM)
  process.exit(1)
}

const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

const c = await startAdminApi(t, {
  // A killed node fails its probes at once (connection refused); the long timeout keeps a busy moment on these shared
  // cores from failing the others too (which would make one grouped alert).
  'probe-interval': '1s', 'probe-timeout': '1s', 'alert-down-after': 3, 'alert-group-window': '1s', 'alert-flap-half-life': '1s', 'alert-max-lag': '0',
})
await startNode(t, 'live', { seed: c.seedAddress, children: 1, 'node-id': 'live-a1', ...FAST })
await startNode(t, 'proxy', { seed: c.seedAddress, children: 1, 'node-id': 'proxy-a1', ...FAST })
const doomed = await startNode(t, 'proxy', { seed: c.seedAddress, children: 1, 'node-id': 'proxy-eu1', region: 'eu-1', ...FAST })
const ids = await waitFor('five nodes registered and healthy', async () => {
  const a = await c.api('GET', '/api/nodes')
  const ok = a.status === 200 ? (a.json as { id: string; health: string }[]).filter((n) => n.health === 'ok') : []
  return ok.length === 5 ? ok.map((n) => n.id).sort() : undefined
})
const cli = (...args: string[]) => runCli(['admin', ...args, '--seed', c.seedAddress], { env: { ...process.env, ESPRA_SECRET: SECRET } })
const buildDir = testDir('espra-dashboard-build-')
mkdirSync(join(buildDir, 'server'))
writeFileSync(join(buildDir, 'server', 'main.js'), 'export default { fetch() { return new Response("one") } }\n')
const first = await cli('push-build', buildDir, '--message', 'first build')
writeFileSync(join(buildDir, 'server', 'main.js'), 'export default { fetch() { return new Response("two") } }\n')
const second = await cli('push-build', buildDir, '--message', XSS)
t.same([first.code, second.code], [0, 0], `${first.stderr}${second.stderr}`)
const [one, two] = [first.stdout.trim(), second.stdout.trim()]

// Chromium is launched inside a subtest (its teardown closes it), the steps run as its subtests, in order.
let page: Page
const base = `http://127.0.0.1:${c.admin.port}`
const cspViolations: string[] = []

/** Opens an SSE stream on the admin node with the bearer token; resolves a function that closes it. */
function openStream(): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: c.admin.port, path: '/api/events', headers: { authorization: `Bearer ${c.tokens.operator}` }, agent: false }, (res) => {
      res.once('data', () => resolve(() => req.destroy()))
    })
    req.on('error', (err) => (/socket hang up|aborted/.test(String(err)) ? undefined : reject(err)))
    req.end()
  })
}

t.test('the dashboard in Chromium', async (t) => {
const browser = await launchBrowser(t)
page = await browser.newPage()
page.setDefaultTimeout(30_000)
page.on('console', (m) => {
  if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text())
})

await t.test('log in, see every node, and a figure change on screen without reloading', async (t) => {
  await page.goto(`${base}/`)
  t.equal(new URL(page.url()).pathname, '/dashboard/login', 'no session: to the login page')
  await page.fill('#token', 'wrong-token')
  await page.press('#token', 'Enter')
  await page.waitForSelector('#error:has-text("ESPRA_ERR_ADMIN_UNAUTHORIZED")')
  await page.fill('#token', c.tokens.operator)
  await page.press('#token', 'Enter')
  await page.waitForURL(`${base}/dashboard/`)
  await page.waitForSelector('tr[data-node="proxy-eu1"]')
  const shown = (await page.$$eval('tr[data-node]', (rows) => rows.map((r) => r.getAttribute('data-node')))).sort()
  t.same(shown, ids, 'every registered node has a row')
  t.same(await page.$$eval('main h2', (hs) => hs.map((h) => h.textContent)), ['Region eu-1 · 1 node', 'Region us-1 · 4 nodes'], 'grouped by region')
  t.match(await page.textContent('#who'), 'ops (operator)')
  t.match(await page.textContent('#link'), '● live')

  const adminId = ids.find((id) => id.startsWith('admin'))!
  const connections = (): Promise<number> => page.$eval(`tr[data-node="${adminId}"] td:nth-child(4)`, (td) => Number(td.textContent))
  const before = await connections()
  const closers = await Promise.all([openStream(), openStream(), openStream()])
  t.teardown(() => closers.forEach((close) => close()))
  await waitFor('the admin node\'s connections go up on screen', async () => ((await connections()) >= before + 3 ? true : undefined), 20_000)
  t.pass(`connections went from ${before} to ${await connections()} without a reload`)
  const navigations = await page.evaluate(() => performance.getEntriesByType('navigation').length)
  t.equal(navigations, 1, 'one page load')
})

await t.test('node detail, and every page renders without an error', async (t) => {
  await page.click('tr[data-node="live-a1"] a')
  await page.waitForSelector('dl.figures')
  t.match(await page.textContent('main h1'), 'Node live-a1')
  t.match(await page.textContent('dl.figures'), /roleliveregionus-1healthok/)
  t.match(await page.textContent('dl.figures'), '1 running of 1 wanted')
  await page.waitForSelector('main table >> nth=1')
  for (const [hash, title] of [['#/tasks', 'Tasks'], ['#/events', 'Cluster events'], ['#/audit', 'Audit log'], ['#/alerts', 'Alerts'], ['#/mail', 'Mail'], ['#/builds', 'Builds'], ['#/overview', 'Cluster overview']]) {
    await page.click(`#nav a[href="${hash}"]`)
    await page.waitForSelector(`main h1:has-text("${title}")`)
    await page.waitForLoadState('networkidle').catch(() => {})
    await page.waitForTimeout(500)
    t.same(await page.$$eval('main .error', (els) => els.map((e) => e.textContent).filter((x) => x !== '')), [], `${hash}: no error shown`)
  }
  await page.click('#nav a[href="#/audit"]')
  await page.waitForSelector('main td:has-text("session.login")')
  t.pass('the audit log shows the login')
  await page.click('#nav a[href="#/overview"]')
  await page.waitForSelector('tr[data-node="proxy-eu1"]')
})

await t.test('the overview charts and a screenshot', async (t) => {
  await waitFor('two history samples', async () => ((await c.api('GET', '/api/history')).json.samples.length >= 2 ? true : undefined), 30_000)
  await page.waitForSelector('#chart-rps .uplot', { timeout: 20_000 })
  await page.waitForSelector('#chart-connections .uplot')
  t.ok(await page.$('#chart-rps canvas'), 'uPlot drew the requests/s chart')
  await page.setViewportSize({ width: 1360, height: 820 })
  await page.waitForTimeout(300)
  const file = join(testDir('espra-dashboard-shot-'), 'dashboard.png')
  await page.screenshot({ path: file })
  t.same([...readFileSync(file).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG')
  if (process.env['ESPRA_DASHBOARD_SCREENSHOT'] === '1') copyFileSync(file, new URL('../../../docs/dashboard.png', import.meta.url))
})

await t.test('builds: a hostile message is text; roll back after confirming', async (t) => {
  await page.click('#nav a[href="#/builds"]')
  const row = (id: string) => `tr[data-build="${id}"]`
  await page.waitForSelector(row(two))
  t.equal(await page.textContent(`${row(two)} td.build-message`), XSS, 'the message as text')
  t.equal(await page.$$eval('main img, main script', (els) => els.length), 0, 'no element made from it')
  t.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined, 'nothing ran')
  t.equal(await page.$(`${row(two)} button`), null, 'the current build has no rollback button')

  await page.click(`${row(one)} button`)
  await page.waitForSelector('dialog[open]')
  t.match(await page.textContent('dialog[open] p'), `Roll back to build ${one}`)
  await page.click('#confirm-cancel')
  t.equal(await page.$('dialog'), null, 'cancelled: the dialog is gone')
  t.equal((await c.api('GET', '/api/builds')).json.current, two, 'nothing rolled back')

  await page.click(`${row(one)} button`)
  await page.click('#confirm-ok')
  await page.waitForSelector('#rollback-progress .badge.live')
  t.equal((await c.api('GET', '/api/builds')).json.current, one, 'rolled back')
  await page.waitForSelector(`${row(one)} td:has-text("★")`)
  const audit = (await c.api('GET', '/api/audit?limit=5')).json.entries
  t.match(audit.find((e: { action: string }) => e.action === 'build.rollback'), { target: one, operator: 'ops', outcome: 'ok', status: 202 }, 'audited as the session\'s operator')
})

await t.test('tasks: retry one dead letter, delete another after confirming', async (t) => {
  const seedLink = client(t, c.metaPort)
  await seedLink.ready
  const queue = createMetaTaskQueue(seedLink)
  const kill = async (name: string): Promise<string> => {
    const id = await queue.enqueue(newTask(name, { n: 1 }, { attempts: 1 }))
    const [leased] = await queue.lease({ max: 1, leaseMs: 10_000 })
    t.equal(leased!.id, id)
    await queue.settle([{ id, attempt: 1, result: 'failed', error: 'boom <b>x</b>', retryInMs: 0 }])
    return id
  }
  const [again, gone] = [await kill('report.again'), await kill('report.gone')]
  await page.click('#nav a[href="#/tasks"]')
  const row = (id: string) => `tr[data-task="${id}"]`
  await page.waitForSelector(row(gone))
  t.equal(await page.$$eval('main b', (els) => els.length), 0, 'the error shown as text')

  await page.click(`${row(gone)} button.danger`)
  await page.waitForSelector('dialog[open]')
  t.match(await page.textContent('dialog[open] p'), `Delete dead letter ${gone} (report.gone)?`)
  await page.click('#confirm-cancel')
  t.match((await c.api('GET', '/api/tasks')).json.counts, { dead: 2 }, 'cancelled: nothing deleted')
  await page.click(`${row(gone)} button.danger`)
  await page.click('#confirm-ok')
  await page.waitForSelector(row(gone), { state: 'detached' })
  await page.click(`${row(again)} button:text-is("Retry")`)
  await page.waitForSelector(row(again), { state: 'detached' })
  t.match((await c.api('GET', '/api/tasks')).json.counts, { dead: 0, ready: 1 }, 'one deleted, one ready again')
  const audit = (await c.api('GET', '/api/audit?limit=5')).json.entries as { action: string; target: string; outcome: string }[]
  t.match(audit.find((e) => e.action === 'task.delete'), { target: gone, outcome: 'ok' })
  t.match(audit.find((e) => e.action === 'task.retry'), { target: again, outcome: 'ok' })
})

await t.test('alerts: a killed node\'s alert, silenced from the page', async (t) => {
  await killHard(doomed)
  await page.click('#nav a[href="#/alerts"]')
  const alertRow = 'tr[data-alert]:has(td.id:text-is("proxy-eu1")):has-text("node-down")'
  await page.waitForSelector(`${alertRow} button`, { timeout: 60_000 })
  await page.click(`${alertRow} button`)
  t.equal(await page.inputValue('#silence-node'), 'proxy-eu1', 'the form holds the alert\'s node')
  t.equal(await page.inputValue('#silence-rule'), 'node-down')
  await page.selectOption('#silence-for', String(4 * 3_600_000))
  await page.fill('#silence-comment', 'replacing the disk <b>now</b>')
  await page.press('#silence-comment', 'Enter')
  await page.waitForSelector('tr[data-silence]:has-text("proxy-eu1")')
  const silences = (await c.api('GET', '/api/silences')).json as { node: string; rule: string; by: string; until: number; comment: string }[]
  t.equal(silences.length, 1)
  t.match(silences[0], { node: 'proxy-eu1', rule: 'node-down', by: 'ops', comment: 'replacing the disk <b>now</b>' })
  t.ok(silences[0]!.until > Date.now() + 3.9 * 3_600_000 && silences[0]!.until <= Date.now() + 4 * 3_600_000, 'until: 4 hours ahead')
  t.equal(await page.$$eval('main b', (els) => els.length), 0, 'the comment shown as text')
})

await t.test('the overview follows the node that left; logout ends the session', async (t) => {
  await page.click('#nav a[href="#/overview"]')
  await waitFor('the killed proxy leaves the overview or shows not ok', async () => {
    const badge = await page.$('tr[data-node="proxy-eu1"] .badge')
    return badge === null || (await badge.textContent()) !== 'ok' ? true : undefined
  }, 30_000)
  t.pass('the row changed without a reload')
  await page.click('#logout')
  await page.waitForURL(`${base}/dashboard/login`)
  await page.goto(`${base}/dashboard/`)
  t.equal(new URL(page.url()).pathname, '/dashboard/login', 'logged out')
  t.same(cspViolations, [], 'no CSP violation on any page')
})
})
