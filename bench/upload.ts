/**
 * Upload bench: a file of random (incompressible, so stored as is) bytes sent
 * with `POST /upload` to one fileserver node (1 child: one upload uses one),
 * which hashes it with sha256 and whirlpool on the way to disk, stores it in
 * the blob store and records it in the seed's datastore; versus the hashing
 * floor on the same file: `cat file > /dev/null` plus `sha256sum file`. Every
 * byte lives on tmpfs (/dev/shm): the source file, the node's data directory
 * (uploads-tmp) and the local blob store, so the disk is not what is measured.
 * Also printed, for the why: `openssl dgst -whirlpool` alone (the second hash
 * the upload must compute). Each round uploads different bytes (the first 16
 * change), since identical bytes would be deduplicated, not stored.
 *
 *   npm run build && npx tsx bench/upload.ts [--mb 200] [--rounds 2]
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, createReadStream, createWriteStream, openSync, writeSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { once } from 'node:events'
import { arg } from './args.js'
import { guard, tempDir } from './live-common.js'
import { admin, startRegistered, startSeed } from './nodes.js'
import { loadAverage } from './wrk.js'

const MB = arg('mb', 200)
const ROUNDS = arg('rounds', 2)
const SIZE = MB * 1024 * 1024
const TMPFS = '/dev/shm'

/** Seconds `cmd args` takes (wall clock); throws when it fails. */
function timed(cmd: string, args: string[]): number {
  const t0 = performance.now()
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], shell: false })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString()}`)
  return (performance.now() - t0) / 1000
}

async function writeRandom(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path)
  for (let left = bytes; left > 0; left -= 1024 * 1024) {
    if (!out.write(randomBytes(Math.min(left, 1024 * 1024)))) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(path).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject)
  })
}

interface Upload {
  /** Request start → last body byte handed to the socket: receiving, hashing, writing to uploads-tmp. */
  readonly sentS: number
  /** Request start → whole JSON answer: plus the blob-store copy and the datastore record. */
  readonly totalS: number
  readonly answer: Record<string, unknown>
}

function upload(port: number, token: string, path: string): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let sentS = NaN
    const req = request({
      host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': SIZE, 'x-filename': 'bench.bin' },
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`upload answered ${res.statusCode}: ${text}`))
        resolve({ sentS, totalS: (performance.now() - t0) / 1000, answer: JSON.parse(text) as Record<string, unknown> })
      })
    })
    req.on('error', reject)
    req.on('finish', () => (sentS = (performance.now() - t0) / 1000))
    createReadStream(path, { highWaterMark: 1024 * 1024 }).pipe(req)
  })
}

async function main(): Promise<void> {
  guard((ROUNDS * 60 + 120) * 1000)
  const dir = tempDir('espra-bench-upload-', TMPFS)
  const file = join(dir, 'source.bin')
  await writeRandom(file, SIZE)
  const seed = await startSeed({ 'blob-dir': join(dir, 'blobs') })
  const fs = await startRegistered('fileserver', seed, { children: 1, 'data-dir': join(dir, 'fileserver') })
  console.log(`${MB} MB of random bytes; source, uploads-tmp and blob store on tmpfs ${dir}; fileserver pid ${fs.pid} (1 child); load average before: ${loadAverage()}`)

  let bestUpload = Infinity
  let bestFloor = Infinity
  let bestWhirlpool = Infinity
  for (let round = 1; round <= ROUNDS; round++) {
    const fd = openSync(file, 'r+')
    writeSync(fd, randomBytes(16), 0, 16, 0)
    closeSync(fd)
    const sha = await sha256File(file)
    // The page cache (tmpfs) holds the file for every reader alike.
    const cat = timed('sh', ['-c', `cat '${file}' > /dev/null`])
    const sum = timed('sha256sum', [file])
    const whirlpool = timed('openssl', ['dgst', '-provider', 'legacy', '-provider', 'default', '-whirlpool', file])
    const token = await admin(seed, ['upload-token', '--max-size', `${MB + 1}MB`])
    const up = await upload(fs.port, token, file)
    if (up.answer['sha256'] !== sha || up.answer['size'] !== SIZE || up.answer['deduplicated'] !== false) throw new Error(`unexpected answer ${JSON.stringify(up.answer)}`)
    const floor = cat + sum
    console.log(`  round ${round}: upload ${(MB / up.totalS).toFixed(0)} MB/s (${up.totalS.toFixed(2)} s: body sent at ${up.sentS.toFixed(2)} s, then ${(up.totalS - up.sentS).toFixed(2)} s to store and record)` +
      `; floor ${(MB / floor).toFixed(0)} MB/s (cat ${cat.toFixed(2)} s + sha256sum ${sum.toFixed(2)} s); openssl whirlpool alone ${(MB / whirlpool).toFixed(0)} MB/s; load ${loadAverage()}`)
    bestUpload = Math.min(bestUpload, up.totalS)
    bestFloor = Math.min(bestFloor, floor)
    bestWhirlpool = Math.min(bestWhirlpool, whirlpool)
  }
  const ratio = bestFloor / bestUpload
  console.log(`best: upload ${(MB / bestUpload).toFixed(0)} MB/s, floor ${(MB / bestFloor).toFixed(0)} MB/s: upload/floor ${ratio.toFixed(2)}x (target >= 0.5: ${ratio >= 0.5 ? 'met' : 'MISSED'}); ` +
    `whirlpool alone ${(MB / bestWhirlpool).toFixed(0)} MB/s caps any upload that computes it: ${(bestFloor / bestWhirlpool).toFixed(2)}x of the floor`)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
