/**
 * Upload bench: a file sent with `POST /upload` to one fileserver node (1
 * child: one upload uses one), which hashes it with sha256 (main thread) and
 * whirlpool (the child's hash thread) on the way to disk, gzips it in the same
 * pass when the type is compressible, hands the file to the blob store (a hard
 * link into the local store) and records it in the seed's datastore; versus the floor of
 * the same work on the same file in one read with OpenSSL: `cat file | tee
 * >(openssl dgst -sha256) | openssl dgst -provider legacy -provider default
 * -whirlpool` (plus `gzip -9` of the same read for the compressible row; the
 * floor's digests are checked equal to the upload's, and OpenSSL's whirlpool
 * against the ISO test vector at start), so the ratio measures the upload's
 * overhead, not its work. The floor does not write the bytes anywhere; the
 * upload stores them (tmpfs), so the ratio counts that against the upload. Two rows: random bytes (incompressible, stored as
 * is; target >= 0.8x of the floor) and text (`text/plain`, stored gzipped;
 * reported separately). Every byte lives on tmpfs (/dev/shm): the source
 * files, the node's data directory (uploads-tmp) and the local blob store, so
 * the disk is not what is measured. Each round uploads different bytes (the
 * first 16 change), since identical bytes would be deduplicated, not stored.
 * The floor and the upload alternate which goes first, round by round (and
 * the two rows their order). Then `--small` uploads of 1 KB one after
 * another: their latency is the token check, storing and the seed round
 * trips (through the node's parent). Prints each round's ratio, the median round and
 * the best of each, and the load average before and after.
 *
 *   npm run build && npx tsx bench/upload.ts [--mb 200] [--rounds 2] [--small 200]
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, createReadStream, createWriteStream, openSync, readFileSync, writeSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { once } from 'node:events'
import { arg, helpFrom } from './args.js'
import { createLogger } from '../lib/core/log.js'
import { createDatastoreClient } from '../lib/storage/datastore-client.js'
import { createMetaClient } from '../lib/transport/meta-client.js'
import { deriveUploadKey, mintUploadToken } from '../lib/uploads/token.js'
import { BENCH_SECRET, guard, tempDir } from './live-common.js'
import { admin, startRegistered, startSeed } from './nodes.js'
import { loadAverage } from './wrk.js'

helpFrom(import.meta.url)
const MB = arg('mb', 200)
const ROUNDS = arg('rounds', 2)
/** Small uploads (1 KB each, one after another) for the latency row: what seed round trips cost per upload. */
const SMALL = arg('small', 200)
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

/**
 * The upload's work on `path` in one read: both hashes, and gzip -9 when the
 * upload compresses it. The digests are kept (`<out>.sha256`, `<out>.whirlpool`)
 * and checked against the upload's answer, so the floor is known to have
 * hashed every byte with both algorithms.
 */
function floorOf(path: string, compressible: boolean, out: string): { seconds: number; sha256: string; whirlpool: string } {
  const last = compressible ? `tee >(${WHIRLPOOL} -r > '${out}.whirlpool') | gzip -9 > /dev/null` : `${WHIRLPOOL} -r > '${out}.whirlpool'`
  const seconds = timed(`cat '${path}' | tee >(openssl dgst -sha256 -r > '${out}.sha256') | ${last}`)
  // The process substitutions may finish a moment after the pipeline: wait for their lines.
  const digest = (file: string): string => {
    for (let i = 0; i < 200; i++) {
      const line = readFileSync(file, 'utf8')
      if (line.includes(' ')) return line.split(' ')[0]!
      spawnSync('sleep', ['0.01'])
    }
    throw new Error(`no digest in ${file}`)
  }
  return { seconds, sha256: digest(`${out}.sha256`), whirlpool: digest(`${out}.whirlpool`) }
}

/** Fails at once when this machine's OpenSSL cannot hash whirlpool (the floor would measure less work). */
function checkFloorTools(): void {
  const r = spawnSync('bash', ['-c', `printf abc | ${WHIRLPOOL} -r`], { encoding: 'utf8' })
  // WHIRLPOOL("abc"), ISO/IEC 10118-3 test vector.
  if (!r.stdout.startsWith('4e2448a4c6f486bb16b6562c73b4020bf3043e3a731bce721ae1b303d97e6d4c7181eebdb6c57e277d0e34957114cbd6c797fc9d95d8b582d225292076d4eef5')) {
    throw new Error(`openssl cannot hash whirlpool here (${WHIRLPOOL}): ${r.stderr.trim() || r.stdout.trim()}`)
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
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

function upload(port: number, token: string, path: string, type: string, size = SIZE): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let sentS = NaN
    const req = request({
      host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': type, 'content-length': size, 'x-filename': 'bench' },
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
  /** Per round: upload seconds, floor seconds. */
  readonly rounds: { upload: number; floor: number }[]
}

async function main(): Promise<void> {
  guard((ROUNDS * 120 + 120) * 1000)
  checkFloorTools()
  const dir = tempDir('espra-bench-upload-', TMPFS)
  const rows: Row[] = [
    { name: 'random bytes (incompressible)', file: join(dir, 'random.bin'), type: 'application/octet-stream', compressible: false, rounds: [] },
    { name: 'text (stored gzipped)', file: join(dir, 'text.txt'), type: 'text/plain', compressible: true, rounds: [] },
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
      const out = join(dir, `floor-${round}`)
      const floorBefore = floorFirst ? floorOf(row.file, row.compressible, out) : null
      const token = await admin(seed, ['upload-token', '--max-size', `${MB + 1}MB`])
      const up = await upload(fs.port, token, row.file, row.type)
      const floor = floorBefore ?? floorOf(row.file, row.compressible, out)
      if (up.answer['sha256'] !== sha || up.answer['size'] !== SIZE || up.answer['deduplicated'] !== false) throw new Error(`unexpected answer ${JSON.stringify(up.answer)}`)
      if (floor.sha256 !== sha || floor.whirlpool !== up.answer['whirlpool']) throw new Error(`the floor's digests differ from the upload's: ${JSON.stringify(floor)}`)
      console.log(`  round ${round} ${row.name} (${floorFirst ? 'floor first' : 'upload first'}): upload ${(MB / up.totalS).toFixed(0)} MB/s (${up.totalS.toFixed(2)} s: body sent at ${up.sentS.toFixed(2)} s, then ${(up.totalS - up.sentS).toFixed(2)} s to store and record)` +
        `; floor ${(MB / floor.seconds).toFixed(0)} MB/s (${floor.seconds.toFixed(2)} s); upload/floor ${(floor.seconds / up.totalS).toFixed(2)}x; load ${loadAverage()}`)
      row.rounds.push({ upload: up.totalS, floor: floor.seconds })
    }
  }
  // Latency of small uploads, one at a time: the body is nothing, the token check, storing and seed round trips are all.
  const latencies: number[] = []
  const link = createMetaClient({ seeds: [seed.address], secret: BENCH_SECRET, peer: { kind: 'admin' }, maxFrame: 1024 ** 2, log: createLogger('silent', { role: 'bench', node: 'bench' }), reconnect: false })
  await link.ready
  const datastore = createDatastoreClient(link)
  const tokens = await Promise.all(Array.from({ length: SMALL }, () => mintUploadToken(deriveUploadKey(BENCH_SECRET), datastore, { maxSize: 1024 ** 2, ttlMs: 3_600_000 })))
  link.destroy()
  const small = join(dir, 'small.bin')
  for (let i = 0; i < SMALL; i++) {
    const fd = openSync(small, 'w')
    writeSync(fd, randomBytes(1024))
    closeSync(fd)
    const up = await upload(fs.port, tokens[i]!, small, 'application/octet-stream', 1024)
    latencies.push(up.totalS * 1000)
  }
  const sorted = [...latencies].sort((a, b) => a - b)
  console.log(`  ${SMALL} uploads of 1 KB one after another: median ${median(latencies).toFixed(1)} ms, p90 ${sorted[Math.floor(SMALL * 0.9)]!.toFixed(1)} ms per upload; load ${loadAverage()}`)
  console.log(`upload/floor by row (the floor's digests checked equal to the upload's; load average after: ${loadAverage()}):`)
  for (const row of rows) {
    const ratios = row.rounds.map((r) => r.floor / r.upload)
    const best = Math.min(...row.rounds.map((r) => r.upload))
    const bestFloor = Math.min(...row.rounds.map((r) => r.floor))
    const target = row.compressible ? ' (reported separately, no target)' : ` (target >= 0.8 on the median: ${median(ratios) >= 0.8 ? 'met' : 'MISSED'})`
    console.log(`  ${row.name.padEnd(30)} median round ${median(ratios).toFixed(2)}x, best of each ${(bestFloor / best).toFixed(2)}x (upload ${(MB / best).toFixed(0)} MB/s, floor ${(MB / bestFloor).toFixed(0)} MB/s)${target}`)
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
