// A real browser end to end: Debian's Chromium (headless, driven by playwright-core) opens the live host
// through a real proxy in front of a real Live node, subscribes over a WebSocket from the page's own
// JavaScript, and receives a message published over HTTP. Chromium resolves `*.localhost` to loopback,
// so `http://us-1.live.localhost:<proxy port>/` reaches the proxy with the live host as Host.
import { request } from 'node:http'
import t from 'tap'
import { HAVE_CHROMIUM, launchBrowser, MISSING_CHROMIUM } from '../helpers/browser.js'
import { token } from '../helpers/live.js'
import { LIVE_HOST, liveBehindProxy } from '../helpers/live-proxy.js'

if (!HAVE_CHROMIUM) {
  // .ci/run installs it; a developer machine without it says so instead of failing obscurely.
  t.fail(MISSING_CHROMIUM)
} else {
  t.test('a page on the live host, through the proxy, gets a message over its WebSocket', async (t) => {
    const { proxy } = await liveBehindProxy(t)
    const ch = 'pub:browser'
    const origin = `http://${LIVE_HOST}:${proxy.port}`

    const browser = await launchBrowser(t)
    const page = browser.pages()[0] ?? (await browser.newPage())

    // A URL on the live host that the proxy forwards to the Live node (JSON, public channel).
    const nav = await page.goto(`${origin}/history/${ch}?since=0`)
    t.equal(nav?.status(), 200, 'the live host answers through the proxy')
    t.match(JSON.parse((await nav!.text())), { ch }, 'the Live node\'s history answer')
    t.equal(await page.evaluate(() => location.host), `${LIVE_HOST}:${proxy.port}`, 'the page is on the live host')

    // The page's own JavaScript: a WebSocket to the same host, one subscription.
    const subOk = await page.evaluate(async (channel) => {
      const w = window as unknown as { frames_: unknown[]; ws_: WebSocket }
      w.frames_ = []
      const ws = new WebSocket(`ws://${location.host}/ws`)
      w.ws_ = ws
      ws.onmessage = (e) => w.frames_.push(JSON.parse(String(e.data)))
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve()
        ws.onerror = () => reject(new Error('WebSocket failed to open'))
      })
      ws.send(JSON.stringify({ op: 'sub', ch: channel, id: 1 }))
      return await new Promise<unknown>((resolve) => {
        const check = (): void => {
          const ok = w.frames_.find((f) => (f as { id?: number }).id === 1)
          if (ok) resolve(ok)
          else setTimeout(check, 10)
        }
        check()
      })
    }, ch)
    t.match(subOk, { op: 'sub-ok', ch }, 'subscribed from the page')

    // Published over HTTP through the proxy, by this test (Node), with a publish token.
    const published = await new Promise<{ seq: number }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: proxy.port, method: 'POST', path: `/pub/${ch}`, agent: false, headers: { host: LIVE_HOST, authorization: `Bearer ${token({ pub: [ch] })}` } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as { seq: number }) : reject(new Error(`publish ${res.statusCode}: ${body}`))))
      })
      req.on('error', reject)
      req.end(JSON.stringify({ hello: 'browser' }))
    })

    const handle = await page.waitForFunction(() => (window as unknown as { frames_: { op: string }[] }).frames_.find((f) => f.op === 'msg'), undefined, { timeout: 15_000 })
    t.match(await handle.jsonValue(), { op: 'msg', ch, seq: published.seq, data: { hello: 'browser' } }, 'the page received the message')
    await page.evaluate(() => (window as unknown as { ws_: WebSocket }).ws_.close())
  })
}
