// The dashboard's actions in headless Chromium (Debian's, driven by playwright-core) against a real cluster: a seed
// with a blob directory, an app node, a fileserver and an admin node. Push a build from a directory picked in the
// page (hashed in the browser, the missing files uploaded with a progress bar) and follow it to `live`; then the node
// page's drain (confirmed) and undrain, and a rolling restart started from the page and followed to `done`.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import t from 'tap'
import { startAdminOn } from '../../helpers/admin-api.js'
import { startAppCluster } from '../../helpers/app-cluster.js'
import { HAVE_CHROMIUM, MISSING_CHROMIUM, launchBrowser } from '../../helpers/browser.js'
import { get, waitFor } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

if (!HAVE_CHROMIUM) {
  t.fail(MISSING_CHROMIUM)
  process.exit(1)
}

const cluster = await startAppCluster(t, { children: 1, threads: 1, 'init-timeout': '5s' })
const app = await cluster.startApp()
const fs = await cluster.startFileserver({ children: 1 })
const c = await startAdminOn(t, cluster.seedAddress, { children: 1 })
await waitFor('the admin API reaches the seed', async () => (await c.api('GET', '/api/builds')).status === 200 || undefined)

const dir = testDir('espra-dashboard-push-')
const build = join(dir, 'mybuild')
mkdirSync(join(build, 'server'), { recursive: true })
mkdirSync(join(build, 'public'))
writeFileSync(join(build, 'server', 'index.js'), 'export function handle() { return "pushed from the browser" }\n')
writeFileSync(join(build, 'public', 'index.html'), '<!doctype html><title>browser</title>')
writeFileSync(join(build, 'public', 'data.bin'), Buffer.alloc(700_000, 7))

let page: Page
const base = `http://127.0.0.1:${c.admin.port}`
const cspViolations: string[] = []

t.test('the dashboard\'s actions in Chromium', async (t) => {
  const browser = await launchBrowser(t)
  page = await browser.newPage()
  page.setDefaultTimeout(30_000)
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text())
  })
  await page.goto(`${base}/dashboard/login`)
  await page.fill('#token', c.tokens.operator)
  await page.press('#token', 'Enter')
  await page.waitForURL(`${base}/dashboard/`)

  await t.test('push a build from a directory picked in the page and follow it to live', async (t) => {
    await page.click('#nav a[href="#/builds"]')
    await page.waitForSelector('#push-dir')
    await page.setInputFiles('#push-dir', build)
    await page.fill('#push-message', 'from the <b>browser</b>')
    await page.click('#push-start')
    await page.waitForSelector('#rollback-progress .badge.live', { timeout: 60_000 })
    t.match(await page.textContent('#rollback-progress h2'), /Push of b1: live/)
    t.match(await page.textContent('#push-status'), 'build b1 committed')
    t.equal(await page.$eval('#push-progress', (p) => (p as HTMLProgressElement).value === (p as HTMLProgressElement).max), true, 'the bar is full')
    await cluster.serving(app, 'b1')
    await cluster.serving(fs, 'b1')
    t.equal((await get(app.port, '/')).body, 'pushed from the browser', 'the app node runs it')
    t.equal((await get(fs.port, '/app/public/index.html')).body, '<!doctype html><title>browser</title>', 'the fileserver serves it')
    const listed = (await c.api('GET', '/api/builds')).json.builds[0]
    t.match(listed, { id: 'b1', files: 3, message: 'from the <b>browser</b>' }, 'paths relative to the directory picked')
    await page.waitForSelector('tr[data-build="b1"] td:has-text("★")')
    t.equal(await page.textContent('tr[data-build="b1"] td.build-message'), 'from the <b>browser</b>', 'the message as text')
    const audit = (await c.api('GET', '/api/audit?limit=20')).json.entries.map((e: { action: string; outcome: string }) => `${e.action} ${e.outcome}`)
    for (const line of ['build.push ok', 'build.upload ok', 'build.commit ok']) t.ok(audit.includes(line), `audited: ${line}`)

    // The same directory again: nothing to upload, a new build all the same.
    await page.click('#push-start')
    await page.waitForSelector('#rollback-progress h2:has-text("Push of b2: live")', { timeout: 60_000 })
    t.pass('a second push of the same files went live (nothing uploaded)')
  })

  await t.test('drain a node from its page (after confirming), then undrain it', async (t) => {
    await page.evaluate(() => (location.hash = '#/nodes/app-1'))
    await page.waitForSelector('#drain')
    // Its children, one row per slot, from the heartbeat's per-child figures.
    let slots = 0
    await waitFor('app-1 reports its children', async () => (slots = (await c.api('GET', '/api/nodes/app-1')).json.load.byChild?.length ?? 0) > 0 || undefined)
    t.ok(slots > 0, 'app-1 reports its children')
    t.equal(await page.locator('table.children tbody tr').count(), slots, 'one row per child on the node page')
    await page.selectOption('#drain-grace', '0s')
    await page.click('#drain')
    await page.waitForSelector('dialog[open]')
    t.match(await page.textContent('dialog[open] p'), 'Drain node app-1?')
    await page.click('#confirm-cancel')
    t.equal((await c.api('GET', '/api/nodes/app-1')).json.health, 'ok', 'cancelled: nothing ordered')
    await page.click('#drain')
    await page.click('#confirm-ok')
    await waitFor('app-1 draining', async () => (await c.api('GET', '/api/nodes/app-1')).json.health === 'draining' || undefined, 20_000)
    await page.waitForSelector('#undrain')
    t.match(await page.textContent('dl.figures'), /drain orderidle/, 'the page shows the order')
    await page.focus('#undrain')
    await page.keyboard.press('Enter')
    await waitFor('app-1 back in service', async () => (await c.api('GET', '/api/nodes/app-1')).json.health === 'ok' || undefined, 20_000)
    await page.waitForSelector('#drain')
    const audit = (await c.api('GET', '/api/audit?limit=5')).json.entries
    t.match(audit.slice(0, 2), [{ action: 'node.undrain', target: 'app-1', outcome: 'ok' }, { action: 'node.drain', target: 'app-1', outcome: 'ok', params: { then: 'idle', graceMs: 0 } }])
  })

  await t.test('operations: a rolling restart followed to done, maintenance on and off, a token, a vhost refused', async (t) => {
    await page.click('#nav a[href="#/ops"]')
    await page.waitForSelector('#rr-start')
    await page.selectOption('#rr-role', 'fileserver')
    await page.click('#rr-start')
    await page.click('#confirm-ok')
    await page.waitForSelector('#rr-state .badge.done', { timeout: 90_000 })
    t.match(await page.textContent('#rr-lines'), /fs-1/, 'the job\'s lines name the node')

    await page.selectOption('#maint-for', '30m')
    await page.fill('#maint-message', '<b>back soon</b>')
    await page.click('#maint-on')
    await page.click('#confirm-ok')
    await page.waitForSelector('#maintenance-state :text("back soon")')
    t.match((await c.api('GET', '/api/maintenance')).json.state, { message: '<b>back soon</b>' })
    t.equal(await page.$$eval('#maintenance-state b', (els) => els.length), 0, 'the message as text')
    await page.click('#maint-off')
    await page.waitForSelector('#maintenance-state :text("no maintenance")')
    t.equal((await c.api('GET', '/api/maintenance')).json.state, null)

    await page.click('#mint-upload')
    await page.waitForSelector('#minted-token')
    t.ok((await page.inputValue('#minted-token')).length > 20, 'an upload token shown')

    await page.fill('#vhost-host', 'example.test')
    await page.fill('#vhost-path', '/index.html')
    await page.fill('#vhost-file', `files/${'0'.repeat(64)}`)
    await page.click('#vhost-form button')
    await page.waitForSelector('#toast.bad:has-text("mapping refused")')
    t.pass('a mapping to a file never uploaded: the API\'s refusal shown')
    const actions = (await c.api('GET', '/api/audit?limit=10')).json.entries.map((e: { action: string; outcome: string }) => `${e.action} ${e.outcome}`)
    for (const line of ['rolling-restart.start ok', 'maintenance.set ok', 'maintenance.clear ok', 'token.upload ok', 'vhost.set ESPRA_ERR_VHOST_FILE_MISSING']) t.ok(actions.includes(line), `audited: ${line} (${actions.join(', ')})`)
  })

  t.same(cspViolations, [], 'no Content-Security-Policy violation')
})
