// App builds end to end with real processes: admin push-build to a real seed, two fileserver nodes
// (two children each) loading the build from the shared blob store and serving it under /app.
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Agent } from 'node:http'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import t from 'tap'
import { rawGet, sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { runCli } from '../../helpers/up.js'
import { freePort, health, SECRET, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { testDir } from '../../helpers/temp-dir.js'

type Answer = BytesAnswer

function fetch(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', agent: Agent | false = false): Promise<Answer> {
  return sendForBytes({ host: '127.0.0.1', port, path, method, headers, agent })
}

const raw = rawGet

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(['admin', ...args], { env: { ...process.env, ESPRA_SECRET: SECRET } })
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')
const etagHash = (etag: unknown) => String(etag).replace(/^"|"$/g, '').replace(/-(gz|br)$/, '')

function writeBuild(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
}

t.test('push-build, serve, 304, encodings, HEAD, traversal, delta upload, list, rollback, atomic swap', async (t) => {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const blobDir = testDir('espra-builds-blobs-')
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0', 'blob-dir': blobDir }
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast })
  const fs: StartedNode[] = []
  for (const id of ['fs-a', 'fs-b']) fs.push(await startNode(t, 'fileserver', { seed: seedAddress, children: 2, 'node-id': id, ...fast }))
  await waitFor('both fileservers registered', async () => (await Promise.all(fs.map((n) => health(n.port)))).every((h) => h.body['seedConnected'] === true))
  const connectArgs = ['--seed', seedAddress]

  // Before any build: 404 JSON.
  const none = await fetch(fs[0]!.port, '/app/index.html')
  t.equal(none.status, 404)
  t.match(JSON.parse(none.body.toString()), { code: 'ESPRA_ERR_HTTP_NOT_FOUND' })

  const js = `export const hello = () => ${JSON.stringify('hello '.repeat(400))}\n`
  const files1 = {
    'index.html': '<!doctype html><title>one</title><script src="app.3f2a9c1d.js"></script>',
    'app.3f2a9c1d.js': js,
    'css/style.css': `body { color: red; }\n${'/* padding */\n'.repeat(60)}`,
    'live.txt': `build one ${'1'.repeat(5000)}`,
    // What is public is the build's to say (lib/builds/public-paths.ts); the server code is not listed.
    'espra.json': JSON.stringify({ server: 'server/main.js', public: ['*.html', '*.js', 'css/**', 'live.txt'] }),
    'server/main.js': 'export const handle = () => "the server\'s source"\n',
  }
  const dir1 = testDir('espra-build-')
  writeBuild(dir1, files1)
  const push1 = await cli(['push-build', dir1, '--message', 'first', ...connectArgs])
  t.equal(push1.code, 0, push1.stderr)
  t.equal(push1.stdout, 'b1\n', 'the build id alone on stdout')

  for (const node of fs) {
    t.equal((await health(node.port)).body['build'], 'b1', 'health reports b1')
    const index = await fetch(node.port, '/app/')
    t.equal(index.status, 200)
    t.equal(index.body.toString(), files1['index.html'])
    t.equal(index.headers['content-type'], 'text/html; charset=utf-8')
    t.equal(index.headers['etag'], `"${sha(files1['index.html'])}"`)
    t.equal(index.headers['cache-control'], 'public, max-age=60', 'plain names: short max-age')
    t.equal((await fetch(node.port, '/app/css/style.css')).body.toString(), files1['css/style.css'])
  }
  const port = fs[0]!.port

  // Content-hashed names are immutable for a year; If-None-Match gives 304.
  const app = await fetch(port, '/app/app.3f2a9c1d.js')
  t.equal(app.headers['cache-control'], 'public, max-age=31536000, immutable')
  t.equal(app.headers['vary'], 'Accept-Encoding')
  const notModified = await fetch(port, '/app/app.3f2a9c1d.js', { 'if-none-match': String(app.headers['etag']) })
  t.equal(notModified.status, 304)
  t.equal(notModified.body.length, 0)
  t.equal(notModified.headers['etag'], app.headers['etag'])
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { 'if-none-match': `W/${String(app.headers['etag'])}, "x"` })).status, 304, 'weak comparison, lists')
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { 'if-none-match': '"other"' })).status, 200)

  // Accept-Encoding negotiation over the precompressed variants.
  const br = await fetch(port, '/app/app.3f2a9c1d.js', { 'accept-encoding': 'gzip, deflate, br' })
  t.equal(br.headers['content-encoding'], 'br')
  t.equal(brotliDecompressSync(br.body).toString(), js)
  t.equal(br.headers['etag'], `"${sha(js)}-br"`)
  t.ok(br.body.length < js.length)
  const gz = await fetch(port, '/app/app.3f2a9c1d.js', { 'accept-encoding': 'gzip, br;q=0' })
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.equal(gunzipSync(gz.body).toString(), js)
  const identity = await fetch(port, '/app/app.3f2a9c1d.js', { 'accept-encoding': 'identity' })
  t.equal(identity.headers['content-encoding'], undefined)
  t.equal(identity.body.toString(), js)
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { 'if-none-match': String(gz.headers['etag']) })).status, 304, 'a variant tag validates too')

  // HEAD: the headers and length of GET, no body.
  const head = await fetch(port, '/app/app.3f2a9c1d.js', {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(Buffer.byteLength(js)))
  t.equal(head.body.length, 0)
  t.equal((await fetch(port, '/app/index.html', {}, 'POST')).status, 405)

  // Only what espra.json lists: the server code and espra.json itself are not served.
  for (const path of ['/app/server/main.js', '/app/espra.json']) {
    const hidden = await fetch(port, path)
    t.equal(hidden.status, 404, `${path} is not public`)
    t.notOk(hidden.body.toString().includes('the server'), 'not a byte of it')
  }

  // Range over the representation sent: one range 206, several multipart/byteranges, 416, If-Range.
  const jsBytes = Buffer.from(js)
  const part = await fetch(port, '/app/app.3f2a9c1d.js', { range: 'bytes=7-11' })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], `bytes 7-11/${jsBytes.length}`)
  t.equal(part.body.toString(), js.slice(7, 12))
  t.equal(part.headers['accept-ranges'], 'bytes')
  t.equal(part.headers['x-content-type-options'], 'nosniff')
  const several = await fetch(port, '/app/app.3f2a9c1d.js', { range: 'bytes=0-5,-4' })
  t.equal(several.status, 206)
  const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(String(several.headers['content-type']))?.[1]
  t.ok(boundary, 'multipart/byteranges')
  t.equal(several.body.toString(), `--${boundary}\r\nContent-Type: text/javascript; charset=utf-8\r\nContent-Range: bytes 0-5/${jsBytes.length}\r\n\r\n${js.slice(0, 6)}` +
    `\r\n--${boundary}\r\nContent-Type: text/javascript; charset=utf-8\r\nContent-Range: bytes ${jsBytes.length - 4}-${jsBytes.length - 1}/${jsBytes.length}\r\n\r\n${js.slice(-4)}\r\n--${boundary}--\r\n`)
  const brRange = await fetch(port, '/app/app.3f2a9c1d.js', { range: 'bytes=0-9', 'accept-encoding': 'br' })
  t.equal(brRange.headers['content-encoding'], 'br', 'a range of the brotli bytes when brotli is sent')
  t.match(brRange.headers['content-range'], /^bytes 0-9\/\d+$/)
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { range: `bytes=${jsBytes.length}-` })).status, 416)
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { range: 'bytes=0-9', 'if-range': '"other"' })).status, 200, 'If-Range that does not match: the whole file')
  t.equal((await fetch(port, '/app/app.3f2a9c1d.js', { range: 'bytes=0-9', 'if-range': String(app.headers['etag']) })).status, 206)

  // Unknown path: 404 JSON. Traversal in any form: 400.
  const missing = await fetch(port, '/app/nope.js')
  t.equal(missing.status, 404)
  t.match(JSON.parse(missing.body.toString()), { code: 'ESPRA_ERR_HTTP_NOT_FOUND' })
  for (const path of ['/app/../secret', '/app/%2e%2e/secret', '/app/css/..%2f..%2fsecret', '/app/%252e%252e/x', '/app/a%00b', '/app/a\\..\\b', '/app//etc/passwd', '/app/./index.html', '/app/%zz']) {
    t.equal(await raw(port, path), 400, `400 for ${path}`)
  }

  // A second build changing one file: only that file's bytes travel.
  const dir2 = testDir('espra-build-')
  const files2 = { ...files1, 'live.txt': `build two ${'2'.repeat(7000)}` }
  writeBuild(dir2, files2)
  const push2 = await cli(['push-build', dir2, '--message', 'second', ...connectArgs])
  t.equal(push2.code, 0, push2.stderr)
  t.equal(push2.stdout, 'b2\n')
  const size2 = Buffer.byteLength(files2['live.txt'])
  t.match(push2.stderr, `sending 1 new`)
  t.match(push2.stderr, `${size2} bytes uploaded`)
  const committed = await seed.waitForLog((l) => l.msg === 'build committed; staging' && l['build'] === 'b2', 'b2 committed')
  t.equal(committed['uploadedBytes'], size2, 'the seed received exactly the changed file')
  for (const node of fs) t.equal((await fetch(node.port, '/app/live.txt')).body.toString(), files2['live.txt'])

  // admin builds: both builds, b2 current and run by both fileservers.
  const list = await cli(['builds', '--json', ...connectArgs])
  t.equal(list.code, 0, list.stderr)
  const builds = JSON.parse(list.stdout) as { id: string; current: boolean; nodes: string[]; message: string; files: number }[]
  t.match(builds, [{ id: 'b2', current: true, message: 'second', files: 6 }, { id: 'b1', current: false, message: 'first' }])
  t.same(builds[0]!.nodes, ['fs-a', 'fs-b'])
  const table = await cli(['builds', ...connectArgs])
  t.match(table.stdout, /^ID +TIME/)
  t.match(table.stdout, /b2\*/)

  // Rollback to b1.
  const back = await cli(['rollback', 'b1', ...connectArgs])
  t.equal(back.code, 0, back.stderr)
  t.equal(back.stdout, 'b1\n')
  for (const node of fs) t.equal((await fetch(node.port, '/app/live.txt')).body.toString(), files1['live.txt'])
  t.equal((await cli(['rollback', 'b99', ...connectArgs])).code, 1, 'an unknown build fails')

  // A client hammering one path while builds switch never sees a mix: every body matches its own ETag.
  const agent = new Agent({ keepAlive: true, maxSockets: 4 })
  t.teardown(() => agent.destroy())
  let stop = false
  const seen = new Set<string>()
  let bad = 0
  let count = 0
  const hammer = async () => {
    while (!stop) {
      const r = await fetch(port, '/app/live.txt', {}, 'GET', agent)
      count++
      if (r.status !== 200 || etagHash(r.headers['etag']) !== sha(r.body)) bad++
      seen.add(r.body.toString())
    }
  }
  const hammers = [hammer(), hammer(), hammer(), hammer()]
  for (const id of ['b2', 'b1', 'b2']) {
    const r = await cli(['rollback', id, ...connectArgs])
    t.equal(r.code, 0, r.stderr)
  }
  stop = true
  await Promise.all(hammers)
  t.equal(bad, 0, `no mixed or failed answer in ${count}`)
  t.same([...seen].sort(), [files1['live.txt'], files2['live.txt']].sort(), 'both builds were seen')

  // A child started later (SIGHUP replaces them all) gets the current build from its parent.
  const before = new Set(fs[1]!.logs.filter((l) => l.msg === 'app build serving').map((l) => l.pid))
  fs[1]!.proc.kill('SIGHUP')
  await waitFor('fs-b children replaced', async () => fs[1]!.logs.filter((l) => l.msg === 'app build serving' && !before.has(l.pid) && l['build'] === 'b2').length >= 2, 20_000)
  await waitFor('fs-b reload done', async () => fs[1]!.logs.some((l) => l.msg === 'all children replaced'), 20_000)
  t.equal((await fetch(fs[1]!.port, '/app/live.txt')).body.toString(), files2['live.txt'])

  // Without a "public" list, only public/** is served; a malformed list is refused before anything is sent.
  const dir3 = testDir('espra-build-')
  writeBuild(dir3, { 'public/about.html': '<p>about</p>', 'index.html': 'not public', 'server/index.js': 'export const handle = () => "x"\n' })
  const push3 = await cli(['push-build', dir3, ...connectArgs])
  t.equal(push3.code, 0, push3.stderr)
  t.equal((await fetch(port, '/app/public/about.html')).body.toString(), '<p>about</p>')
  t.equal((await fetch(port, '/app/index.html')).status, 404, 'a root file is not public by default')
  t.equal((await fetch(port, '/app/server/index.js')).status, 404, 'the server code is not public')
  const dir4 = testDir('espra-build-')
  writeBuild(dir4, { 'public/a.txt': 'a', 'espra.json': JSON.stringify({ public: ['../**'] }) })
  const push4 = await cli(['push-build', dir4, ...connectArgs])
  t.not(push4.code, 0)
  t.match(push4.stderr, /ESPRA_ERR_BUILD_INVALID|espra\.json/)

  for (const node of fs) await node.stop()
  await seed.stop()
})

t.test('push-build names the fileservers that cannot load the build, and the build is current nowhere', async (t) => {
  const metaPort = await freePort()
  const seedAddress = `127.0.0.1:${metaPort}`
  const fast = { 'heartbeat-interval': '100ms', 'heartbeat-timeout': '2s', 'seed-grace': '0' }
  // The fileserver's blob directory is not the seed's: it cannot load the build.
  const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'blob-dir': testDir('espra-blobs-') })
  const node = await startNode(t, 'fileserver', { seed: seedAddress, children: 1, 'node-id': 'fs-lonely', ...fast, 'blob-dir': testDir('espra-blobs-') })
  await waitFor('registered', async () => (await health(node.port)).body['seedConnected'] === true)
  const dir = testDir('espra-build-')
  writeBuild(dir, { 'public/index.html': 'hi' })
  const push = await cli(['push-build', dir, '--timeout', '1500ms', '--seed', seedAddress])
  t.equal(push.code, 1)
  t.equal(push.stdout, '', 'no build id: it is current nowhere')
  t.match(push.stderr, /ESPRA_ERR_BUILD_REFUSED.*fs-lonely \(ESPRA_ERR_BUILD_LOAD: build b1: blob [0-9a-f]{64} is not in the blob store\)/)
  await node.waitForLog((l) => l.msg.startsWith('build b1 refused at staging'), 'refusal logged')
  const listed = await cli(['builds', '--json', '--seed', seedAddress])
  t.match(JSON.parse(listed.stdout), [{ id: 'b1', current: false, state: 'refused', refused: [{ node: 'fs-lonely', code: 'ESPRA_ERR_BUILD_LOAD' }] }])
  await node.stop()
  await seed.stop()
})
