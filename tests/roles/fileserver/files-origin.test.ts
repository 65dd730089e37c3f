// Uploaded files served back, end to end with real processes (a seed and fileservers sharing a local blob
// store): an upload is never active on an origin the app uses (nosniff, sandbox CSP, attachment for
// active types, --files-host), /f/ serves uploaded files and nothing else of the store, several ranges
// come back as multipart/byteranges from memory, from the disk cache and straight from the store,
// If-Modified-Since takes only valid dates, client errors are not error lines, a full cache disk still
// serves, and temporary files of a node killed mid-upload are swept when it starts again.
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { deriveUploadKey, mintUploadToken, type UploadMintOptions } from '../../../lib/uploads/token.js'
import { freePort, SECRET, startNode, waitFor, type StartedNode } from '../../helpers/cluster.js'
import { sendForBytes, type BytesAnswer } from '../../helpers/http.js'
import { client } from '../../helpers/seed.js'
import { testDir } from '../../helpers/temp-dir.js'

const blobDir = testDir('espra-files-origin-blobs-')
const metaPort = await freePort()
const fast = { seed: `127.0.0.1:${metaPort}`, 'heartbeat-interval': '200ms', 'heartbeat-timeout': '2s', 'blob-dir': blobDir }
const seed = await startNode(t, 'seed', { 'meta-port': metaPort, ...fast, 'seed-grace': '0' })
t.teardown(() => seed.stop())

async function fileserver(t: Test, flags: Record<string, string | number> = {}): Promise<StartedNode> {
  const node = await startNode(t, 'fileserver', { ...fast, children: 1, ...flags })
  t.teardown(() => node.stop())
  await node.waitForLog((l) => l.msg === 'registered with the seed', 'fileserver registered')
  return node
}
const fs = await fileserver(t)

const admin = client(t, metaPort)
await admin.ready
const datastore = createDatastoreClient(admin)
const mint = (opts: Partial<UploadMintOptions> = {}) => mintUploadToken(deriveUploadKey(SECRET), datastore, { maxSize: 16 * 1024 ** 2, ttlMs: 600_000, ...opts })
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

function fetch(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<BytesAnswer> {
  return sendForBytes({ host: '127.0.0.1', port, path, method, headers, agent: false })
}

async function upload(port: number, type: string, body: Buffer, opts: Partial<UploadMintOptions> = {}, filename?: string): Promise<BytesAnswer> {
  const headers = { authorization: `Bearer ${await mint(opts)}`, 'content-type': type, 'content-length': String(body.length), ...(filename ? { 'x-filename': filename } : {}) }
  return sendForBytes({ host: '127.0.0.1', port, path: '/upload', method: 'POST', headers, agent: false }, body)
}

/** Uploads and returns the /f/ path of the stored file. */
async function stored(type: string, body: Buffer, opts: Partial<UploadMintOptions> = {}, filename?: string): Promise<string> {
  const answer = await upload(fs.port, type, body, opts, filename)
  if (answer.status !== 200) throw new Error(`upload answered ${answer.status}: ${answer.body.toString()}`)
  return `/f/files/${sha256(body)}`
}

/** The parts of a multipart/byteranges body: each one's Content-Range and bytes. */
function parts(answer: BytesAnswer): { range: string; type: string; body: Buffer }[] {
  const boundary = /boundary=(\S+)/.exec(String(answer.headers['content-type']))![1]!
  const text = answer.body.toString('latin1')
  const out: { range: string; type: string; body: Buffer }[] = []
  for (const piece of text.split(`--${boundary}`).slice(1)) {
    if (piece.startsWith('--')) break
    const headEnd = piece.indexOf('\r\n\r\n')
    const head = piece.slice(0, headEnd)
    const body = piece.slice(headEnd + 4).replace(/\r\n$/, '')
    out.push({ range: /Content-Range: (.*)/.exec(head)![1]!.trim(), type: /Content-Type: (.*)/.exec(head)![1]!.trim(), body: Buffer.from(body, 'latin1') })
  }
  return out
}

t.test('an uploaded HTML or SVG file never runs: nosniff, a sandbox CSP, attachment; passive types inline', async (t) => {
  const html = Buffer.from(`<script>document.cookie</script> ${randomBytes(8).toString('hex')}`)
  const page = await fetch(fs.port, await stored('text/html', html, {}, 'page.html'))
  t.equal(page.status, 200)
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.match(page.headers['content-security-policy'], /(^|; )sandbox(;|$)/, 'sandboxed: no script, an opaque origin')
  t.match(page.headers['content-security-policy'], /default-src 'none'/)
  t.equal(page.headers['content-disposition'], "attachment; filename*=UTF-8''page.html", 'downloaded, not shown')
  t.equal(page.body.toString(), html.toString())

  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><!-- ${randomBytes(8).toString('hex')} --></svg>`)
  const image = await fetch(fs.port, await stored('image/svg+xml', svg))
  t.equal(image.headers['content-disposition'], 'attachment', 'SVG is active')
  t.equal(image.headers['x-content-type-options'], 'nosniff')

  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(2000)])
  const pic = await fetch(fs.port, await stored('image/png', png, {}, 'cat.png'))
  t.equal(pic.headers['content-disposition'], "inline; filename*=UTF-8''cat.png", 'a raster image is shown')
  t.match(pic.headers['content-security-policy'], /sandbox/, 'still sandboxed')

  const allowed = Buffer.from(`<p>shown inline ${randomBytes(8).toString('hex')}</p>`)
  const inline = await fetch(fs.port, await stored('text/html', allowed, { inline: true }))
  t.equal(inline.headers['content-disposition'], 'inline', 'the token said inline')
  t.match(inline.headers['content-security-policy'], /sandbox/, 'and it is sandboxed all the same')
  const head = await fetch(fs.port, await stored('text/html', html), {}, 'HEAD')
  t.equal(head.headers['content-disposition'], "attachment; filename*=UTF-8''page.html", 'HEAD too (the first upload of the bytes named them)')
})

t.test('/f/ serves uploaded files only: build manifests, build blobs and tus parts are not found', async (t) => {
  const store = await createLocalBlobStore(blobDir)
  t.teardown(() => store.close())
  const blob = Buffer.from('export const secret = 1\n')
  for (const key of ['builds/b1/manifest.json', `blobs/sha256/${sha256(blob)}`, `tus/${'a'.repeat(32)}/0-abcd`, 'hello.txt', `files/${sha256(blob)}/x`, 'files/ABC']) {
    await store.put(key, blob, { contentType: 'application/json' })
    const answer = await fetch(fs.port, `/f/${key}`)
    t.equal(answer.status, 404, `${key} is not served`)
    t.match(JSON.parse(answer.body.toString()), { code: 'ESPRA_ERR_HTTP_NOT_FOUND' })
  }
})

t.test('--files-host: uploaded files on that host only, the app build never on it', async (t) => {
  const split = await fileserver(t, { 'files-host': 'files.example.test' })
  const body = Buffer.from(`files host ${randomBytes(8).toString('hex')}`)
  const path = await stored('text/plain', body)
  const onFilesHost = await fetch(split.port, path, { host: `files.example.test:${split.port}` })
  t.equal(onFilesHost.status, 200)
  t.equal(onFilesHost.body.toString(), body.toString())
  t.equal((await fetch(split.port, path, { host: 'FILES.example.test.' })).status, 200, 'case and a trailing dot do not matter')
  for (const host of [`127.0.0.1:${split.port}`, 'app.example.test', 'files.example.test.evil']) {
    const elsewhere = await fetch(split.port, path, { host })
    t.equal(elsewhere.status, 404, `not on ${host}`)
    t.match(JSON.parse(elsewhere.body.toString()), { code: 'ESPRA_ERR_HTTP_NOT_FOUND', message: /files\.example\.test only/ })
  }
  const app = await fetch(split.port, '/app/', { host: 'files.example.test' })
  t.equal(app.status, 404)
  t.match(JSON.parse(app.body.toString()), { message: /serves uploaded files only/ }, 'no app page on the files host')
})

t.test('several ranges: multipart/byteranges from memory, from the disk cache file and straight from the store', async (t) => {
  const small = randomBytes(50_000)
  const large = randomBytes(3 * 1024 ** 2)
  const smallPath = await stored('application/octet-stream', small)
  const largePath = await stored('application/octet-stream', large)
  const direct = await fileserver(t, { 'cache-max-bytes': '4KB' })
  for (const [what, port, path, bytes] of [['memory', fs.port, smallPath, small], ['disk cache', fs.port, largePath, large], ['store', direct.port, largePath, large]] as const) {
    await fetch(port, path) // warm
    const answer = await fetch(port, path, { range: 'bytes=10-19, 1000-1009, -5' })
    t.equal(answer.status, 206, what)
    t.match(answer.headers['content-type'], /^multipart\/byteranges; boundary=/)
    t.equal(Number(answer.headers['content-length']), answer.body.length, 'the length was known up front')
    t.same(parts(answer).map((p) => [p.range, p.type, p.body.toString('hex')]), [
      [`bytes 10-19/${bytes.length}`, 'application/octet-stream', bytes.subarray(10, 20).toString('hex')],
      [`bytes 1000-1009/${bytes.length}`, 'application/octet-stream', bytes.subarray(1000, 1010).toString('hex')],
      [`bytes ${bytes.length - 5}-${bytes.length - 1}/${bytes.length}`, 'application/octet-stream', bytes.subarray(bytes.length - 5).toString('hex')],
    ], `${what}: every part, in order`)
    const one = await fetch(port, path, { range: 'bytes=0-3,2-7' })
    t.equal(one.headers['content-range'], `bytes 0-7/${bytes.length}`, 'overlapping ranges merged into one')
    t.ok(one.body.equals(bytes.subarray(0, 8)))
    const head = await fetch(port, path, { range: 'bytes=0-0,-1' }, 'HEAD')
    t.equal(head.status, 206)
    t.ok(Number(head.headers['content-length']) > 2)
  }
})

t.test('If-Modified-Since: an invalid date (the year 10000) is ignored', async (t) => {
  const path = await stored('text/plain', Buffer.from(`ims ${randomBytes(8).toString('hex')}`))
  const first = await fetch(fs.port, path)
  t.equal((await fetch(fs.port, path, { 'if-modified-since': String(first.headers['last-modified']) })).status, 304)
  t.equal((await fetch(fs.port, path, { 'if-modified-since': 'Sat, 01 Jan 10000 00:00:00 GMT' })).status, 200, 'the year 10000 is no date')
  t.equal((await fetch(fs.port, path, { 'if-modified-since': 'Fri, 01 Jan 2100 00:00:00 GMT' })).status, 200, 'a date in the future is ignored')
})

t.test('client errors (415, a bad form, a client gone) are info lines without stacks, not errors', async (t) => {
  const refused = await upload(fs.port, 'text/html', Buffer.from('<p>'), { types: ['image/png'] })
  t.equal(refused.status, 415)
  const boundary = 'espra-bad'
  const badForm = await upload(fs.port, `multipart/form-data; boundary=${boundary}`, Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\nno file\r\n--${boundary}--\r\n`))
  t.equal(badForm.status, 400)
  await fs.waitForLog((l) => l['code'] === 'ESPRA_ERR_UPLOAD_BAD_BODY', 'the bad form logged')
  const lines = fs.logs.filter((l) => l['code'] === 'ESPRA_ERR_UPLOAD_TYPE' || l['code'] === 'ESPRA_ERR_UPLOAD_BAD_BODY' || (l['err'] as { code?: string } | undefined)?.code?.startsWith('ESPRA_ERR_UPLOAD'))
  t.ok(lines.length >= 2)
  t.ok(lines.every((l) => l.level === 'info' && !JSON.stringify(l).includes('"stack"')), 'info, no stack')
})

t.test('a full cache disk: a 4 MB object is streamed from the blob store (a 2 MB tmpfs as the cache; needs mount rights)', async (t) => {
  const dir = testDir('espra-files-full-cache-')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir])
  if (mounted.status !== 0) return t.plan(0, `skipped: cannot mount a tmpfs here: ${mounted.stderr.toString().trim()}`)
  t.teardown(() => void spawnSync('umount', ['-l', dir]))
  const full = await fileserver(t, { 'cache-dir': dir })
  const bytes = randomBytes(4 * 1024 ** 2)
  const path = await stored('application/octet-stream', bytes)
  const answer = await fetch(full.port, path)
  t.equal(answer.status, 200, answer.status === 200 ? '' : answer.body.toString())
  t.ok(answer.body.equals(bytes), 'the whole object, from the store')
  const part = await fetch(full.port, path, { range: 'bytes=100-199' })
  t.equal(part.status, 206)
  t.ok(part.body.equals(bytes.subarray(100, 200)))
  t.ok(full.logs.some((l) => l.msg.startsWith('disk cache: no room on its disk')), 'the full disk is logged, once')
})

t.test('kill -9 mid-upload: the temporary file is swept when the node starts again; a dead child\'s when it exits', async (t) => {
  const dataDir = testDir('espra-files-killed-')
  const tmp = join(dataDir, 'uploads-tmp')
  let node = await fileserver(t, { 'data-dir': dataDir, 'node-id': 'fs-killed' })
  const partial = async (target: StartedNode) => {
    const req = request({ host: '127.0.0.1', port: target.port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${await mint()}`, 'content-type': 'application/octet-stream', 'content-length': String(10 * 1024 ** 2) } })
    req.on('error', () => {})
    req.write(randomBytes(256 * 1024))
    await waitFor('a temporary file receiving the body', () => readdirSync(tmp).some((n) => statSync(join(tmp, n)).size > 0))
    return req
  }
  // The whole node: parent and child killed at once, nobody left to clean up.
  const req = await partial(node)
  for (const pid of [node.proc.pid!, ...node.childPids()]) process.kill(pid, 'SIGKILL')
  await node.exited
  req.destroy()
  const left = readdirSync(tmp)
  t.equal(left.length, 1, 'left behind by the killed node')
  // An unrelated leftover of an earlier version (no pid prefix) goes too.
  mkdirSync(tmp, { recursive: true })
  writeFileSync(join(tmp, 'b3a1c2d4e5f60718293a4b5c'), 'old')
  node = await fileserver(t, { 'data-dir': dataDir, 'node-id': 'fs-killed' })
  t.same(readdirSync(tmp), [], 'swept at start')
  t.ok(node.logs.some((l) => l.msg === 'removed temporary upload files an earlier run left behind' && l['files'] === 2))

  // One child killed: the parent replaces it and removes what it left.
  const req2 = await partial(node)
  const [child] = node.childPids()
  process.kill(child!, 'SIGKILL')
  req2.destroy()
  await waitFor('the dead child\'s file removed', () => readdirSync(tmp).length === 0)
  t.pass('the parent removed the dead child\'s temporary file')
})
