// The sample app (examples/sample-app) as a new user meets it: `espra-node up` pushes it as the first
// build, and two headless Chromium pages walk through it. The front page comes from the app role (with
// its visit count in the app's tables) and its assets from the fileserver; the chat and its presence
// list run over a real Live node through the real proxy; an upload posts straight to the fileserver
// with a one-time token, its progress bar follows the uploader's live channel, and the announcement of
// the shared file is a background task run by an app worker.
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { HAVE_CHROMIUM, launchBrowser, MISSING_CHROMIUM } from '../helpers/browser.js'
import { get } from '../helpers/cluster.js'
import { startUp } from '../helpers/up.js'
import { testDir } from '../helpers/temp-dir.js'

if (!HAVE_CHROMIUM) {
  t.fail(MISSING_CHROMIUM)
} else {
  t.test('the sample app: pages, chat with presence, an upload with progress, a background task', async (t) => {
    const cluster = await startUp(t)
    t.match(cluster.output(), /sample app \(pushed as the first build\): open http:\/\/127\.0\.0\.1:\d+\//, 'up says where the sample app is')
    const appUrl = `http://127.0.0.1:${cluster.port('app')}`
    // Uploaded files live on a host of their own (--files-host files.localhost under up), apart from the app's pages.
    const filesHost = `files.localhost:${cluster.port('fileserver')}`
    const filesUrl = `http://${filesHost}`
    t.match(cluster.output(), `files       ${filesUrl}/f/`, 'up prints the files address')

    const browser = await launchBrowser(t)
    const ann = browser.pages()[0] ?? (await browser.newPage())
    const failed: string[] = []
    ann.on('requestfailed', (r) => failed.push(`${r.method()} ${r.url()} ${r.failure()?.errorText}`))

    // The dynamic page from the app role; its stylesheet and script from the fileserver.
    const front = await ann.goto(`${appUrl}/`)
    t.equal(front?.status(), 200)
    t.equal(await ann.title(), 'espra-node sample app')
    t.equal(await ann.textContent('#visits'), '1', 'first visit, counted in the app tables')
    await ann.waitForFunction(() => getComputedStyle(document.body).maxWidth !== 'none')
    t.match(await ann.evaluate(() => getComputedStyle(document.body).maxWidth), /px$/, 'the stylesheet from the fileserver applies')
    const about = await get(cluster.port('fileserver'), '/app/public/about.html')
    t.equal(about.status, 200, 'the static page is served by the fileserver')
    t.match(about.body, /About this app/)

    // Two people join; each sees the other in the presence list.
    await ann.fill('#name', 'Ann')
    await ann.click('#join button')
    await ann.waitForSelector('#room:not([hidden])[data-connected="true"]')
    await ann.waitForFunction(() => document.getElementById('online')?.textContent === '1')
    const bob = await browser.newPage()
    await bob.goto(`${appUrl}/`)
    t.equal(await bob.textContent('#visits'), '2', 'the second visit')
    await bob.fill('#name', 'Bob')
    await bob.click('#join button')
    await ann.waitForFunction(() => document.getElementById('online')?.textContent === '2', undefined, { timeout: 15_000 })
    t.match(await ann.textContent('#members'), /Ann/)
    t.match(await ann.textContent('#members'), /Bob/, 'Ann sees Bob join')
    await bob.waitForFunction(() => document.getElementById('online')?.textContent === '2')

    // Chat: Bob's message reaches Ann.
    await bob.fill('#text', 'hello from Bob')
    await bob.click('#say button')
    await ann.waitForFunction(() => document.getElementById('messages')?.textContent?.includes('hello from Bob'), undefined, { timeout: 15_000 })
    t.pass('Ann received Bob\'s message over the live host')

    // Ann shares a file: the progress bar completes, the task announces it to everyone.
    const bytes = Buffer.alloc(512 * 1024, 'espra sample upload\n')
    const file = join(testDir('espra-sample-'), 'notes.txt')
    writeFileSync(file, bytes)
    await ann.setInputFiles('#file', file)
    await ann.click('#upload button')
    await ann.waitForFunction(() => (document.getElementById('progress') as HTMLProgressElement).value === 100, undefined, { timeout: 20_000 })
    await ann.waitForFunction(() => document.getElementById('progress-text')?.textContent?.startsWith('stored and shared'), undefined, { timeout: 20_000 })
    t.pass('the upload finished, as the live channel said, and the page told the app')
    await bob.waitForFunction(() => document.getElementById('messages')?.textContent?.includes('Ann shared notes.txt'), undefined, { timeout: 30_000 })
    t.pass('the background task announced the file to Bob')
    const link = await bob.getAttribute('#messages li:last-child a', 'href')
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    t.equal(link, `${filesUrl}/f/files/${sha256}`, 'the announcement links the stored file')
    const stored = await get(cluster.port('fileserver'), `/f/files/${sha256}`, false, { host: filesHost })
    t.equal(stored.status, 200)
    t.equal(createHash('sha256').update(stored.body).digest('hex'), sha256, 'the fileserver serves the uploaded bytes on the files host')
    t.equal(stored.headers['x-content-type-options'], 'nosniff')
    t.match(stored.headers['content-security-policy'], /sandbox/)
    t.equal((await get(cluster.port('fileserver'), `/f/files/${sha256}`)).status, 404, 'and not on the host of the app\'s assets')

    // The front page now lists the file (the task wrote it to the app tables).
    await ann.goto(`${appUrl}/`)
    t.equal(await ann.textContent('#visits'), '3')
    t.match(await ann.textContent('#shared'), /notes\.txt \(524288 bytes\) by Ann/)
    t.same(failed, [], 'no request of the pages failed')
  })
}
