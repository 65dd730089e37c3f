/**
 * Cold-miss coalescing bench: N concurrent requests (each on its own
 * connection) for one key no fileserver has cached, through `/f/<key>` on one
 * fileserver node (2 children) whose blob store is a real S3-protocol server
 * (s3rver) behind a counting pass-through front: prints how many GETs of the
 * key reached S3 (the target is exactly 1), the answers' status and bytes,
 * and the latency distribution; then the same N again, now cached, for
 * comparison. Each round uses a fresh key.
 *
 *   npm run build && npx tsx bench/cold-miss.ts [--requests 500] [--kb 1024] [--rounds 3]
 */
import { createHash, randomBytes } from 'node:crypto'
import { Agent, request } from 'node:http'
import { createS3BlobStore } from '../lib/storage/s3-blob-store.js'
import { arg, helpFrom } from './args.js'
import { guard } from './live-common.js'
import { startRegistered, startSeed } from './nodes.js'
import { loadAverage } from './wrk.js'
import { startCountingS3 } from '../tests/helpers/counting-s3.js'

helpFrom(import.meta.url)

const REQUESTS = arg('requests', 500)
const KB = arg('kb', 1024)
const ROUNDS = arg('rounds', 3)
const BUCKET = 'espra-bench-cold'

// The nodes inherit these (s3rver accepts any signature made with them).
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true'
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER'
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER'


interface Burst {
  readonly ms: number[]
  readonly statuses: Map<number, number>
  readonly wrongBodies: number
}

/** `n` GETs at once, each on a new connection; latency from the burst's start. */
async function burst(port: number, path: string, n: number, sha: string): Promise<Burst> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
  const statuses = new Map<number, number>()
  let wrongBodies = 0
  const t0 = performance.now()
  const ms = await Promise.all(Array.from({ length: n }, () => new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      const h = createHash('sha256')
      res.on('data', (d: Buffer) => h.update(d))
      res.on('end', () => {
        statuses.set(res.statusCode!, (statuses.get(res.statusCode!) ?? 0) + 1)
        if (res.statusCode === 200 && h.digest('hex') !== sha) wrongBodies++
        resolve(performance.now() - t0)
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })))
  agent.destroy()
  return { ms: ms.sort((a, b) => a - b), statuses, wrongBodies }
}

function describe(b: Burst): string {
  const at = (p: number) => b.ms[Math.min(b.ms.length - 1, Math.ceil((p / 100) * b.ms.length) - 1)]!.toFixed(1)
  const statuses = [...b.statuses].map(([s, c]) => `${c}x${s}`).join(' ')
  return `${statuses}${b.wrongBodies ? `, ${b.wrongBodies} WRONG bodies` : ''}; latency ms min ${b.ms[0]!.toFixed(1)} p50 ${at(50)} p90 ${at(90)} p99 ${at(99)} max ${b.ms[b.ms.length - 1]!.toFixed(1)}`
}

async function main(): Promise<void> {
  guard((ROUNDS * 60 + 120) * 1000)
  const s3 = await startCountingS3(BUCKET)
  const seed = await startSeed({ 'blob-store': 's3', 's3-endpoint': s3.endpoint, 's3-bucket': BUCKET })
  const fs = await startRegistered('fileserver', seed, { children: 2 })
  const direct = createS3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.direct, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
  console.log(`${REQUESTS} concurrent GETs (one connection each) of a fresh ${KB} KB key per round; fileserver pid ${fs.pid} (2 children); s3rver behind a counting front; load average before: ${loadAverage()}`)
  let allOne = true
  for (let round = 1; round <= ROUNDS; round++) {
    // /f/ serves uploaded files only: a fresh key of their shape each round.
    const bytes = randomBytes(KB * 1024)
    const sha = createHash('sha256').update(bytes).digest('hex')
    const key = `files/${sha}`
    await direct.put(key, bytes, { contentType: 'application/octet-stream' })
    const cold = await burst(fs.port, `/f/${key}`, REQUESTS, sha)
    const gets = s3.count('GET', key)
    const heads = s3.count('HEAD', key)
    const warm = await burst(fs.port, `/f/${key}`, REQUESTS, sha)
    allOne &&= gets === 1 && s3.count('GET', key) === 1 && cold.statuses.get(200) === REQUESTS && cold.wrongBodies === 0
    console.log(`  round ${round}: S3 GETs of the key ${gets} (HEADs ${heads}); cold: ${describe(cold)}`)
    console.log(`           warm (cached, S3 GETs now ${s3.count('GET', key)}): ${describe(warm)}; load ${loadAverage()}`)
  }
  console.log(`exactly 1 blob-store fetch per cold key, every answer whole and right: ${allOne ? 'met' : 'MISSED'}`)
  await direct.close()
  await s3.close()
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
