// The App role end to end with real processes: a seed, an app node (children with worker threads),
// builds pushed with the real `admin push-build` CLI and loaded from the shared blob store.
import { readdirSync } from 'node:fs'
import { Agent } from 'node:http'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { admin, startAppCluster, writeBuild } from '../../helpers/app-cluster.js'
import { health, waitFor } from '../../helpers/cluster.js'
import { sendForBytes } from '../../helpers/http.js'
import { testDir } from '../../helpers/temp-dir.js'

/** A request to the app node (a body goes with its Content-Length); the answer's body as bytes. */
function fetch(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string; agent?: Agent | false } = {}) {
  const length = opts.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(opts.body)) }
  return sendForBytes({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { ...length, ...opts.headers }, agent: opts.agent ?? false }, opts.body)
}

interface AppOptions {
  /** Name the entry in espra.json (server/main.js) instead of the default server/index.js. */
  named?: boolean
  initThrows?: boolean
  /** ms init waits before it resolves (a slow start makes a swap's window wide). */
  initDelay?: number
}

/** A test application; `version` is baked into two modules so a mixed build would show. */
function writeApp(version: string, opts: AppOptions = {}): string {
  const entry = opts.named ? 'server/main.js' : 'server/index.js'
  const files: Record<string, string> = {
    'server/version.js': `export const VERSION = ${JSON.stringify(version)}\n`,
    'server/data.js': `export const DATA = ${JSON.stringify(version)}\n`,
    'public/readme.txt': 'not code\n',
    [entry]: `
import { threadId } from 'node:worker_threads'
import { VERSION } from './version.js'
import { DATA } from './data.js'
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
let ctx
export async function init(c) {
  ctx = c
  ${opts.initThrows ? "throw new Error('init refused on purpose')" : ''}
  await sleep(${opts.initDelay ?? 0})
}
export async function destroy() {
  ctx.log.info({ build: ctx.config.build }, 'app destroy ran')
}
export async function handle(req) {
  switch (req.path) {
    case '/echo':
      return {
        status: 201,
        headers: { 'content-type': 'application/json', 'x-echo': ['a', 'b'] },
        body: JSON.stringify({ method: req.method, url: req.url, path: req.path, query: req.query, q: req.searchParams.get('q'),
          headers: req.headers, body: req.text(), bodyIsBytes: req.body instanceof Uint8Array, address: req.address, build: ctx.config.build }),
      }
    case '/bytes': return { headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array([0, 1, 2, 255]) }
    case '/stream': return { body: (async function* () { yield 'one,'; await sleep(5); yield new TextEncoder().encode('two,'); yield 'three' })() }
    case '/big-stream': {
      const n = Number(req.searchParams.get('n'))
      const chunk = new Uint8Array(64 * 1024).fill(120)
      return { body: (async function* () { for (let i = 0; i < n; i++) yield chunk })() }
    }
    case '/string': return 'just a string'
    case '/throw': throw new Error('boom on purpose')
    case '/loop': for (;;) {}
    case '/sleep': ctx.log.info({ tag: req.searchParams.get('tag') }, 'app sleeping'); await sleep(Number(req.searchParams.get('ms'))); return { body: 'slept' }
    case '/whoami': return { body: String(threadId) }
    case '/version': return { body: VERSION + ':' + DATA }
    case '/cache': { const had = ctx.cache.get('k'); ctx.cache.set('k', 'v', 60000); return { body: String(had) + ',' + ctx.cache.get('k') } }
    case '/token': return { body: ctx.mintToken({ sub: ['news'], ttlMs: 60000 }) }
    case '/tables': {
      const tb = ctx.tables
      await tb.set('notes', 'a', { n: 1, at: new Date(0).toISOString() })
      await tb.set('notes', 'b', 'short-lived', 1)
      await tb.set('other', 'a', 'elsewhere')
      await sleep(10)
      const errors = []
      for (const bad of [() => tb.get('Bad Table', 'a'), () => tb.set('notes', 'x', () => 1), () => tb.set('notes', '', 1), () => tb.set('notes', 'big', 'x'.repeat(70000))]) {
        try { await bad(); errors.push('none') } catch (err) { errors.push(err.code) }
      }
      const out = { a: await tb.get('notes', 'a'), b: await tb.get('notes', 'b'), list: await tb.list('notes'), errors }
      out.deleted = [await tb.delete('notes', 'a'), await tb.delete('notes', 'a')]
      out.after = await tb.get('notes', 'a')
      out.other = await tb.get('other', 'a')
      return { headers: { 'content-type': 'application/json' }, body: JSON.stringify(out) }
    }
    case '/exit': process.exit(3)
    case '/bad-header': return { headers: { 'x-bad': 'a\\r\\nx-injected: 1' }, body: 'x' }
  }
  return { status: 404, body: 'no such page' }
}
`,
  }
  if (opts.named) files['espra.json'] = JSON.stringify({ server: 'server/main.js' })
  return writeBuild(files)
}

async function startCluster(t: Test, appFlags: Record<string, string | number>) {
  const cluster = await startAppCluster(t, appFlags)
  return { ...cluster, app: await cluster.startApp() }
}
t.test('request contract, errors with ids, timeouts replace the worker, full queue', async (t) => {
  const { app, push, serving } = await startCluster(t, { children: 1, threads: 2, 'queue-size': 1, 'request-timeout': '5s', 'max-body': '1KB' })
  const port = app.port

  const none = await fetch(port, '/echo')
  t.equal(none.status, 503, 'no build yet: 503')
  t.equal(none.headers['retry-after'], '1')
  t.match(JSON.parse(none.body.toString()), { code: 'ESPRA_ERR_APP_NO_BUILD' })
  t.equal((await health(port)).status, 200, 'health answers without a build')

  await push(writeApp('v1', { named: true }), 'b1')
  await serving(app, 'b1')

  // The whole request reaches the application.
  const echo = await fetch(port, '/echo?q=a%20b&x=1', { method: 'POST', headers: { 'x-one': '1', 'content-type': 'text/plain' }, body: 'hello body' })
  t.equal(echo.status, 201)
  t.equal(echo.headers['content-type'], 'application/json')
  t.same(echo.headers['x-echo'], 'a, b', 'repeated response headers')
  t.equal(echo.headers['x-espra-build'], 'b1')
  const seen = JSON.parse(echo.body.toString()) as Record<string, unknown>
  t.match(seen, { method: 'POST', url: '/echo?q=a%20b&x=1', path: '/echo', query: 'q=a%20b&x=1', q: 'a b', body: 'hello body', bodyIsBytes: true, build: 'b1' })
  t.match(seen['headers'], { 'x-one': '1', 'content-type': 'text/plain', 'content-length': '10' })
  t.match(String(seen['address']), /127\.0\.0\.1|7f00:0*1$/, 'the client address')

  const big = await fetch(port, '/echo', { method: 'PUT', body: Buffer.alloc(2048, 97) })
  t.equal(big.status, 413, 'a body over --max-body: 413')

  const bytes = await fetch(port, '/bytes')
  t.same([...bytes.body], [0, 1, 2, 255], 'bytes body')
  t.equal(bytes.headers['content-type'], 'application/octet-stream')
  const streamed = await fetch(port, '/stream')
  t.equal(streamed.status, 200)
  t.equal(streamed.body.toString(), 'one,two,three', 'async-iterable body')
  t.equal(streamed.headers['transfer-encoding'], 'chunked', 'streamed, not buffered')
  const bigStream = await fetch(port, '/big-stream?n=320')
  t.equal(bigStream.body.length, 320 * 64 * 1024, '20 MB streamed whole (with back-pressure)')
  t.ok(bigStream.body.every((b) => b === 120))
  t.equal((await fetch(port, '/string')).body.toString(), 'just a string')
  t.equal((await fetch(port, '/nope')).status, 404, 'the app decides statuses')
  t.equal((await fetch(port, '/cache')).body.length > 0, true)
  t.match((await fetch(port, '/token')).body.toString(), /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'ctx.mintToken')

  // ctx.tables: rows in the seed's datastore, TTLs, tables kept apart, bad input rejected with a code.
  const tables = JSON.parse((await fetch(port, '/tables')).body.toString()) as Record<string, unknown>
  t.same(tables['a'], { n: 1, at: '1970-01-01T00:00:00.000Z' }, 'a row reads back')
  t.equal(tables['b'], undefined, 'a row past its TTL reads as absent')
  t.same(tables['list'], { rows: [{ key: 'a', value: { n: 1, at: '1970-01-01T00:00:00.000Z' }, expiresAt: 0 }], next: null }, 'list: live rows of that table only')
  t.same(tables['errors'], ['ESPRA_ERR_DATASTORE_INVALID', 'ESPRA_ERR_APP_ARGUMENT', 'ESPRA_ERR_DATASTORE_INVALID', 'ESPRA_ERR_DATASTORE_INVALID'], 'bad table, unsendable value, empty key, oversized value')
  t.same(tables['deleted'], [true, false])
  t.equal(tables['after'], undefined)
  t.equal(tables['other'], 'elsewhere', 'another table keeps its own row')

  const badHeader = await fetch(port, '/bad-header')
  t.equal(badHeader.status, 500, 'a header with CR/LF is refused')
  t.equal(badHeader.headers['x-injected'], undefined)

  // A throwing handler: 500 with an error id that is in the log; the worker keeps serving.
  const thrown = await fetch(port, '/throw')
  t.equal(thrown.status, 500)
  const failure = JSON.parse(thrown.body.toString()) as { code: string; errorId: string }
  t.equal(failure.code, 'ESPRA_ERR_APP_HANDLER')
  t.match(failure.errorId, /^[0-9a-f]{16}$/)
  const logged = await app.waitForLog((l) => l['errorId'] === failure.errorId, 'the error id in the log')
  t.match(logged, { level: 'error', err: { message: 'boom on purpose' } })
  t.notMatch(thrown.body.toString(), /boom/, 'the error text stays in the log')
  for (let i = 0; i < 4; i++) t.equal((await fetch(port, '/version')).body.toString(), 'v1:v1', 'still serving after a throw')

  // A worker that exits while holding a request: 500 for that request, a replacement, serving goes on.
  const exited = await fetch(port, '/exit')
  t.equal(exited.status, 500)
  t.match(JSON.parse(exited.body.toString()), { code: 'ESPRA_ERR_APP_HANDLER' })
  await app.waitForLog((l) => l.msg === 'app worker replaced', 'a replacement for the exited worker')
  const replacedBefore = app.logs.filter((l) => l.msg === 'app worker replaced').length

  // An infinite loop: 504, that worker is replaced, the other one serves meanwhile.
  const threadsBefore = new Set<string>()
  const looping = fetch(port, '/loop')
  await waitFor('the loop holds one worker', async () => {
    const who = await fetch(port, '/whoami')
    threadsBefore.add(who.body.toString())
    return who.status === 200
  })
  for (let i = 0; i < 5; i++) t.equal((await fetch(port, '/version')).status, 200, 'the other worker serves while one loops')
  const timedOut = await looping
  t.equal(timedOut.status, 504)
  t.match(JSON.parse(timedOut.body.toString()), { code: 'ESPRA_ERR_APP_TIMEOUT' })
  await waitFor('a replacement for the looping worker', () => app.logs.filter((l) => l.msg === 'app worker replaced').length > replacedBefore)
  // Both workers answer again: two slow requests at once both succeed.
  const pair = await Promise.all([fetch(port, '/sleep?ms=200&tag=p1'), fetch(port, '/sleep?ms=200&tag=p2')])
  t.same(pair.map((a) => a.status), [200, 200], 'two workers again')

  // A full queue: both workers busy, one request queued, the rest 503 with Retry-After.
  const holding = [fetch(port, '/sleep?ms=1500&tag=h1'), fetch(port, '/sleep?ms=1500&tag=h2')]
  await app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === 'h1', 'h1 running')
  await app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === 'h2', 'h2 running')
  const extra = await Promise.all([fetch(port, '/version'), fetch(port, '/version'), fetch(port, '/version')])
  const statuses = extra.map((a) => a.status).sort()
  t.same(statuses, [200, 503, 503], 'one queued and served, two refused')
  for (const refused of extra.filter((a) => a.status === 503)) {
    t.equal(refused.headers['retry-after'], '1')
    t.match(JSON.parse(refused.body.toString()), { code: 'ESPRA_ERR_APP_BUSY' })
  }
  t.same((await Promise.all(holding)).map((a) => a.status), [200, 200])

  // SIGTERM: a running request finishes, then every worker runs destroy and the node exits 0.
  const last = fetch(port, '/sleep?ms=800&tag=last')
  await app.waitForLog((l) => l.msg === 'app sleeping' && l['tag'] === 'last', 'the last request running')
  const stopped = app.stop()
  t.equal((await last).status, 200, 'the request in flight at SIGTERM is answered')
  t.equal((await stopped).code, 0)
  t.ok(app.logs.filter((l) => l.msg === 'app destroy ran').length >= 2, 'destroy ran in the workers')
})

t.test('build swap under load: no failed request, no mixed answer; a build whose init throws is refused', async (t) => {
  const dataDir = testDir('espra-app-data-')
  const { app, push, serving, seedAddress } = await startCluster(t, { children: 2, threads: 2, 'queue-size': 10000, 'request-timeout': '20s', 'data-dir': dataDir })
  const builds = async () => JSON.parse((await admin(['builds', '--json', '--seed', seedAddress])).stdout) as { id: string; nodes: string[]; refused: unknown[] }[]
  const port = app.port
  await push(writeApp('v1', { initDelay: 300 }), 'b1')
  await serving(app, 'b1')

  let running = true
  let b2ServingAt = Infinity
  const answers: { sentAt: number; status: number; body: string; build: unknown }[] = []
  const failures: string[] = []
  const agent = new Agent({ keepAlive: true, maxSockets: 8 })
  const loops = Array.from({ length: 8 }, async () => {
    while (running) {
      const sentAt = Date.now()
      try {
        const a = await fetch(port, '/version', { agent })
        answers.push({ sentAt, status: a.status, body: a.body.toString(), build: a.headers['x-espra-build'] })
      } catch (err) {
        failures.push(String(err))
      }
    }
  })
  await waitFor('load running', () => answers.length > 50)
  await push(writeApp('v2', { initDelay: 300 }), 'b2')
  await serving(app, 'b2')
  b2ServingAt = Date.now()
  const afterSwap = answers.length
  await waitFor('load after the swap', () => answers.length > afterSwap + 200)

  // A build whose init throws: refused at staging (push-build fails), the node keeps b2 and says so in its log; the load goes on.
  const pushed3 = await admin(['push-build', writeApp('v3', { initThrows: true }), '--seed', seedAddress])
  t.equal(pushed3.code, 1, 'push-build fails')
  t.match(pushed3.stderr, /ESPRA_ERR_BUILD_REFUSED: build b3 is current nowhere: refused by app-1 \(ESPRA_ERR_APP_INIT: build b3 refused: init refused on purpose\)/)
  const refusal = await app.waitForLog((l) => l.msg.startsWith('build b3 refused at staging'), 'the refusal in the parent log', 30_000)
  t.match(refusal, { level: 'error', build: 'b3', code: 'ESPRA_ERR_APP_INIT' })
  const afterRefusal = answers.length
  await waitFor('load after the refusal', () => answers.length > afterRefusal + 200)
  running = false
  await Promise.all(loops)
  agent.destroy()

  t.same(failures, [], 'no transport failure')
  t.same(answers.filter((a) => a.status !== 200), [], 'every request answered 200')
  t.same(answers.filter((a) => a.body !== 'v1:v1' && a.body !== 'v2:v2'), [], 'no mixed or half-loaded answer')
  t.same(answers.filter((a) => a.body !== `${a.build === 'b1' ? 'v1' : 'v2'}:${a.build === 'b1' ? 'v1' : 'v2'}`), [], 'the build header matches the code that answered')
  t.ok(answers.some((a) => a.body === 'v1:v1') && answers.some((a) => a.body === 'v2:v2'), 'both builds answered')
  t.same(answers.filter((a) => a.sentAt > b2ServingAt && a.body !== 'v2:v2'), [], 'once the node reports b2, only b2 answers')
  const afterRefused = await health(port)
  t.equal(afterRefused.body['build'], 'b2', 'health still reports b2 after the refused b3')
  t.match(afterRefused.body['buildRefused'], { id: 'b3', code: 'ESPRA_ERR_APP_INIT', message: /init refused on purpose/ }, 'and names the refused build')
  t.equal((await fetch(port, '/version')).body.toString(), 'v2:v2')
  await waitFor('the seed knows of the refusal', async () => (await builds()).some((b) => b.refused.length > 0))
  const listed = await builds()
  t.match(listed.find((b) => b.id === 'b3'), { nodes: [], refused: [{ node: 'app-1', code: 'ESPRA_ERR_APP_INIT', message: /init refused on purpose/ }] }, 'admin builds: b3 refused by app-1')
  t.match(listed.find((b) => b.id === 'b2'), { nodes: ['app-1'], refused: [] })
  const table = await admin(['builds', '--seed', seedAddress])
  t.match(table.stdout, /REFUSED BY[\s\S]*app-1 \(ESPRA_ERR_APP_INIT\)[\s\S]*b3 refused by app-1: .*init refused on purpose/, 'and in the table')

  // Build directories on disk: once b4 serves, only it and the previous one (b2) stay; b1 and the refused b3 go.
  await push(writeApp('v4'), 'b4')
  await serving(app, 'b4')
  t.equal((await fetch(port, '/version')).body.toString(), 'v4:v4')
  t.equal((await health(port)).body['buildRefused'], undefined, 'a build served after the refused one clears it')
  // package.json is app-builds/'s own (builds load as ES modules), never pruned.
  await waitFor('old build directories removed', () => readdirSync(join(dataDir, 'app-builds')).sort().join() === 'b2,b4,package.json')
})
