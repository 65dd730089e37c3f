/**
 * Upload bench: a file sent with `POST /upload` to one fileserver node (1
 * child: one upload uses one), which hashes it with sha256 (main thread) and
 * whirlpool (the child's hash thread) on the way to disk, gzips it in the same
 * pass when the type is compressible, hands the file to the blob store (a hard
 * link into the local store) and records it in the seed's datastore; versus the floor of
 * the same work on the same file in one read with OpenSSL: `cat file | tee
 * >(openssl dgst -sha256) | openssl dgst -whirlpool` (plus `gzip -9` of the
 * same read for the compressible row), so the ratio measures the upload's
 * overhead, not its work. Two rows: random bytes (incompressible, stored as
 * is; target >= 0.8x of the floor) and text (`text/plain`, stored gzipped;
 * reported separately). Every byte lives on tmpfs (/dev/shm): the source
 * files, the node's data directory (uploads-tmp) and the local blob store, so
 * the disk is not what is measured. Each round uploads different bytes (the
 * first 16 change), since identical bytes would be deduplicated, not stored.
 * Prints the load average before and after.
 *
 *   npm run build && npx tsx bench/upload.ts [--mb 200] [--rounds 2]
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, createReadStream, createWriteStream, openSync, writeSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { once } from 'node:events'
import { arg, helpFrom } from './args.js'
import { guard, tempDir } from './live-common.js'
import { admin, startRegistered, startSeed } from './nodes.js'
import { loadAverage } from './wrk.js'

helpFrom(import.meta.url)
const MB = arg('mb', 200)
const ROUNDS = arg('rounds', 2)
const SIZE = MB * 1024 * 1024
const TMPFS = '/dev/shm'

const WHIRLPOOL = 'openssl dgst -provider legacy -provider default -whirlpool'

/** Seconds a bash pipeline takes (wall clock); throws when any part of it fails. */
function timed(pipeline: string): number {
  const t0 = performance.now()
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', pipeline], { stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`${pipeline} failed: ${r.stderr.toString()}`)
  return (performance.now() - t0) / 1000
}

/** The upload's work on `path` in one read: both hashes, and gzip -9 when the upload compresses it. */
function floorOf(path: string, compressible: boolean): number {
  const last = compressible ? `tee >(${WHIRLPOOL} > /dev/null) | gzip -9 > /dev/null` : `${WHIRLPOOL} > /dev/null`
  return timed(`cat '${path}' | tee >(openssl dgst -sha256 > /dev/null) | ${last}`)
}

/** Text that compresses like a real document does (not a run of one byte). */
async function writeText(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path)
  let line = 0
  for (let left = bytes; left > 0;) {
    let chunk = ''
    while (chunk.length < 1024 * 1024) chunk += `${line++}\tinvoice ${(line * 7919) % 100000}\tcustomer-${(line * 104729) % 5000}\tpaid ${(line % 97) * 3.5} EUR\n`
    const piece = chunk.slice(0, Math.min(left, chunk.length))
    left -= piece.length
    if (!out.write(piece)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
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

function upload(port: number, token: string, path: string, type: string): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let sentS = NaN
    const req = request({
      host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': type, 'content-length': SIZE, 'x-filename': 'bench' },
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

interface Row {
  readonly name: string
  readonly file: string
  readonly type: string
  readonly compressible: boolean
  bestUpload: number
  bestFloor: number
}

async function main(): Promise<void> {
  guard((ROUNDS * 120 + 120) * 1000)
  const dir = tempDir('espra-bench-upload-', TMPFS)
  const rows: Row[] = [
    { name: 'random bytes (incompressible)', file: join(dir, 'random.bin'), type: 'application/octet-stream', compressible: false, bestUpload: Infinity, bestFloor: Infinity },
    { name: 'text (stored gzipped)', file: join(dir, 'text.txt'), type: 'text/plain', compressible: true, bestUpload: Infinity, bestFloor: Infinity },
  ]
  await writeRandom(rows[0]!.file, SIZE)
  await writeText(rows[1]!.file, SIZE)
  const seed = await startSeed({ 'blob-dir': join(dir, 'blobs') })
  const fs = await startRegistered('fileserver', seed, { children: 1, 'data-dir': join(dir, 'fileserver') })
  console.log(`${MB} MB files; sources, uploads-tmp and blob store on tmpfs ${dir}; fileserver pid ${fs.pid} (1 child); load average before: ${loadAverage()}`)

  for (let round = 1; round <= ROUNDS; round++) {
    for (const row of round % 2 === 1 ? rows : [...rows].reverse()) {
      const fd = openSync(row.file, 'r+')
      writeSync(fd, randomBytes(8).toString('hex'), 0, 'latin1')
      closeSync(fd)
      const sha = await sha256File(row.file)
      // The page cache (tmpfs) holds the file for every reader alike; the floor and the upload take turns going first.
      const floorFirst = round % 2 === 0
      const floor = floorFirst ? floorOf(row.file, row.compressible) : NaN
      const token = await admin(seed, ['upload-token', '--max-size', `${MB + 1}MB`])
      const up = await upload(fs.port, token, row.file, row.type)
      const floorS = floorFirst ? floor : floorOf(row.file, row.compressible)
      if (up.answer['sha256'] !== sha || up.answer['size'] !== SIZE || up.answer['deduplicated'] !== false) throw new Error(`unexpected answer ${JSON.stringify(up.answer)}`)
      console.log(`  round ${round} ${row.name}: upload ${(MB / up.totalS).toFixed(0)} MB/s (${up.totalS.toFixed(2)} s: body sent at ${up.sentS.toFixed(2)} s, then ${(up.totalS - up.sentS).toFixed(2)} s to store and record)` +
        `; floor ${(MB / floorS).toFixed(0)} MB/s (${floorS.toFixed(2)} s); load ${loadAverage()}`)
      row.bestUpload = Math.min(row.bestUpload, up.totalS)
      row.bestFloor = Math.min(row.bestFloor, floorS)
    }
  }
  console.log(`best of each (load average after: ${loadAverage()}):`)
  for (const row of rows) {
    const ratio = row.bestFloor / row.bestUpload
    const target = row.compressible ? '' : ` (target >= 0.8: ${ratio >= 0.8 ? 'met' : 'MISSED'})`
    console.log(`  ${row.name.padEnd(30)} upload ${(MB / row.bestUpload).toFixed(0)} MB/s, floor ${(MB / row.bestFloor).toFixed(0)} MB/s: upload/floor ${ratio.toFixed(2)}x${target}`)
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
