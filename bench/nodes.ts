/**
 * Shared by the fileserver and app benches: a real seed, the admin CLI
 * against it, build directories, and one-off HTTP requests. Nodes are real
 * `espra-node` processes from dist (bench/live-common.ts starts and kills
 * them); run `npm run build` first.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import { runCli } from '../tests/helpers/up.js'
import { sleep } from './args.js'
import { BENCH_SECRET, freePorts, startEspra, tempDir, type EspraNode } from './live-common.js'

export interface BenchSeed {
  readonly node: EspraNode
  /** `host:port` of its meta port, for `--seed`. */
  readonly address: string
  /** Flags every node of the bench shares with the seed: a blob store they all read (builds), a heartbeat. */
  readonly shared: Readonly<Record<string, string | number>>
}

/** A seed on fresh ports; `flags` override the shared defaults (a fresh local blob directory, 500 ms heartbeats). */
export async function startSeed(flags: Record<string, string | number> = {}): Promise<BenchSeed> {
  const meta = await freePorts()
  const address = `127.0.0.1:${meta}`
  const shared = { 'blob-dir': tempDir('espra-bench-blobs-'), 'heartbeat-interval': '500ms', ...flags }
  const node = await startEspra('seed', await freePorts(), { ...shared, seed: address, 'meta-port': meta, 'seed-grace': '0' })
  return { node, address, shared }
}

/** `count` seeds on the PostgreSQL datastore at `url` (seed-a, seed-b, …; one blob directory), once the first leads and each other follows. */
export async function startPostgresSeeds(url: string, count: number): Promise<BenchSeed[]> {
  const blobDir = tempDir('espra-bench-blobs-')
  const seeds: BenchSeed[] = []
  for (let i = 0; i < count; i++) {
    const seed = await startSeed({ datastore: url, 'blob-dir': blobDir, 'node-id': `seed-${String.fromCharCode(97 + i)}` })
    await seed.node.waitForLog((l) => l['msg'] === (i === 0 ? 'seed leads the cluster' : 'seed follows the leader'), i === 0 ? 'leads' : 'follows')
    seeds.push(seed)
  }
  return seeds
}

/** A node of `role` registered with `seed` (or the `seed` list in `flags`), with the seed's shared flags plus `flags`. */
export async function startRegistered(role: string, seed: BenchSeed, flags: Record<string, string | number>): Promise<EspraNode> {
  const node = await startEspra(role, await freePorts(), { ...seed.shared, seed: seed.address, ...flags })
  await node.waitForLog((l) => l['msg'] === 'registered with the seed', `${role} registered`)
  return node
}

/** `espra-node admin <args> --seed <seed>`; resolves its stdout, trimmed; throws on a non-zero exit. */
export async function admin(seed: BenchSeed, args: string[]): Promise<string> {
  const out = await runCli(['admin', ...args, '--seed', seed.address], { env: { ...process.env, ESPRA_SECRET: BENCH_SECRET } })
  if (out.code !== 0) throw new Error(`admin ${args[0]} failed (${out.code}): ${out.stderr}`)
  return out.stdout.trim()
}

/** Writes `files` (path → content) under `dir`. */
export function writeTree(dir: string, files: Readonly<Record<string, string | Buffer>>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
}

/** Writes `files` to a fresh directory and pushes it as the next app build; resolves the build id. */
export async function pushBuild(seed: BenchSeed, files: Readonly<Record<string, string | Buffer>>, message: string): Promise<string> {
  const dir = tempDir('espra-bench-build-')
  writeTree(dir, files)
  return admin(seed, ['push-build', dir, '--message', message])
}

export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer
}

/** One GET on a fresh connection. */
export function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** Polls `port` until `path` answers 200 and `ok` holds for the answer (30 s at most). */
export async function waitServing(port: number, path: string, ok: (a: Answer) => boolean = () => true): Promise<Answer> {
  let last = ''
  for (let i = 0; i < 600; i++) {
    try {
      const a = await get(port, path)
      if (a.status === 200 && ok(a)) return a
      last = `${a.status} ${a.body.toString().slice(0, 800)}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(50)
  }
  throw new Error(`${path} on ${port} never served as expected (last: ${last})`)
}

/** Waits until a node's health answer names `build` (an app node does not hold up push-build). */
export function waitBuild(node: EspraNode, build: string): Promise<Answer> {
  return waitServing(node.port, '/_espra/health', (a) => (JSON.parse(a.body.toString()) as { build?: unknown }).build === build)
}
