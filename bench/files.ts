/**
 * Fileserver bench: one espra fileserver node (2 children) versus nginx
 * (2 workers, sendfile, open_file_cache, gzip_static, keep-alive) on the same
 * files at the same URLs: a 1 KB and a 50 KB asset of the current app build
 * (pushed with `admin push-build`, served from memory; plain and gzip) and a
 * 1 MB object of the blob store (`/f/<key>`, warmed by one GET first, so it
 * is served from a child's memory layer, which the disk cache fills; nginx
 * serves its copy from the page cache). wrk with keep-alive, both sides in
 * rounds whose order turns each round; prints req/s, MB/s, p50/p99 and the
 * server's CPU (wrk shares the 2 cores and is not pinned: the same for both
 * sides) of each run, the best and the median round of each, and the ratios
 * against the targets (req/s from the best and the median rounds, p99 from
 * the median ones), with the load average before and after. Needs
 * `npm run build`, `wrk` and `nginx`.
 *
 *   npx tsx bench/files.ts [--duration 10] [--connections 50] [--threads 2] [--rounds 3]
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { createLocalBlobStore } from '../lib/storage/local-blob-store.js'
import { arg, helpFrom } from './args.js'
import { adopt, descendants, freePorts, guard, tempDir } from './live-common.js'
import { get, pushBuild, startRegistered, startSeed, waitServing, writeTree } from './nodes.js'
import { formatMeasured, loadAverage, measureRounds, requireTools, type Target } from './wrk.js'

helpFrom(import.meta.url)
const DURATION_S = arg('duration', 10)
const CONNECTIONS = arg('connections', 50)
const THREADS = arg('threads', 2)
const ROUNDS = arg('rounds', 3)

/** Text that compresses like real JavaScript does (not a run of one byte). */
function scriptOf(bytes: number): string {
  let out = ''
  for (let i = 0; out.length < bytes; i++) out += `export function handler${i}(event) { return event.target.value.trim() + ${i * 7919 % 1000}; }\n`
  return out.slice(0, bytes)
}

interface Case {
  readonly name: string
  readonly path: string
  readonly headers?: Record<string, string>
  /** Minimum espra/nginx req/s ratio. */
  readonly target: number
}

const SMALL = '/app/small.3f2a9c1d.js'
const MEDIUM = '/app/medium.8b1e4d2a.js'
// /f/ serves uploaded files only: a key of their shape (files/<sha256>), named by a word.
const OBJECT_KEY = `files/${createHash('sha256').update('bench/one-mb.bin').digest('hex')}`

const CASES: readonly Case[] = [
  { name: '1 KB asset (memory)', path: SMALL, target: 1.0 },
  { name: '50 KB asset (memory)', path: MEDIUM, target: 1.0 },
  { name: '50 KB asset, gzip (memory)', path: MEDIUM, headers: { 'Accept-Encoding': 'gzip' }, target: 1.0 },
  { name: '1 MB object (memory layer)', path: `/f/${OBJECT_KEY}`, target: 1.0 },
]

function nginxConfig(dir: string, port: number): string {
  return `
worker_processes 2;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_errors on;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  gzip_static on;
  gzip_vary on;
  types { text/javascript js; application/octet-stream bin; }
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  server {
    listen 127.0.0.1:${port} reuseport;
    root ${dir}/www;
    location /app/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /f/ { add_header Cache-Control "public, max-age=2678400"; }
  }
}
`
}

async function main(): Promise<void> {
  requireTools('wrk', 'nginx')
  guard((ROUNDS * CASES.length * 2 * (DURATION_S + 5) + 120) * 1000)
  const dir = tempDir('espra-bench-files-')
  const files = { 'small.3f2a9c1d.js': scriptOf(1024), 'medium.8b1e4d2a.js': scriptOf(50 * 1024) }
  // Fileservers serve only what a build says is public (lib/builds/public-paths.ts).
  const build = { ...files, 'espra.json': JSON.stringify({ public: ['*.js'] }) }
  const object = randomBytes(1024 * 1024)

  // espra: a seed and one fileserver node (2 children) sharing a local blob store.
  const blobDir = join(dir, 'blobs')
  const seed = await startSeed({ 'blob-dir': blobDir })
  const fs = await startRegistered('fileserver', seed, { children: 2, 'cache-dir': join(dir, 'cache') })
  const buildId = await pushBuild(seed, build, 'bench/files')
  const store = await createLocalBlobStore(blobDir)
  await store.put(OBJECT_KEY, object, { contentType: 'application/octet-stream' })
  await store.close()

  // nginx: the same bytes at the same paths, with .gz twins for gzip_static (zlib level 9, as the fileserver makes them).
  writeTree(join(dir, 'www', 'app'), Object.fromEntries(Object.entries(files).flatMap(([name, text]) => [[name, text], [`${name}.gz`, gzipSync(text, { level: 9 })]])))
  writeTree(join(dir, 'www', 'f'), { [OBJECT_KEY]: object })
  const port = await freePorts()
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port))
  const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-e', join(dir, 'nginx-error.log')], { stdio: ['ignore', 'inherit', 'inherit'] })
  adopt(nginx)

  // Both answer every case with the same bytes before anything is measured (this GET also warms the disk cache).
  for (const c of CASES) {
    await Promise.all([waitServing(fs.port, c.path), waitServing(port, c.path)])
    const [a, b] = await Promise.all([get(fs.port, c.path, c.headers), get(port, c.path, c.headers)])
    const same = c.headers ? a.headers['content-encoding'] === 'gzip' && b.headers['content-encoding'] === 'gzip' : a.body.equals(b.body)
    if (!same || (c.headers === undefined && a.body.length !== (c.path === SMALL ? 1024 : c.path === MEDIUM ? 50 * 1024 : object.length))) {
      throw new Error(`${c.name}: espra and nginx do not answer the same (${a.body.length} / ${b.body.length} bytes)`)
    }
  }
  const gz = await get(fs.port, MEDIUM, { 'accept-encoding': 'gzip' })
  console.log(`build ${buildId}; fileserver pid ${fs.pid} children ${fs.children().join(',')}; nginx pid ${nginx.pid}; 50 KB asset gzip: ${gz.body.length} bytes`)
  console.log(`wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION_S}s --latency (keep-alive, wrk not pinned, same for both), ${ROUNDS} round(s), the order turned each round; load average before: ${loadAverage()}`)

  const results: string[] = []
  for (const c of CASES) {
    console.log(`${c.name}: ${c.path}${c.headers ? ` with ${JSON.stringify(c.headers)}` : ''}`)
    const sides: Target[] = [
      { name: 'nginx', url: `http://127.0.0.1:${port}${c.path}`, headers: c.headers, pids: () => [nginx.pid!, ...descendants(nginx.pid!)] },
      { name: 'espra fileserver', url: `http://127.0.0.1:${fs.port}${c.path}`, headers: c.headers, pids: () => [fs.pid, ...fs.children()] },
    ]
    const { best, median } = await measureRounds(sides, ROUNDS, { threads: THREADS, connections: CONNECTIONS, durationS: DURATION_S })
    const [n, e, nm, em] = [best.get('nginx')!, best.get('espra fileserver')!, median.get('nginx')!, median.get('espra fileserver')!]
    const ratio = e.rps / n.rps
    // Per core of server CPU: less moved by what else runs on the shared cores than req/s alone.
    const perCore = (e.rps / e.cores) / (n.rps / n.cores)
    results.push(`  ${c.name.padEnd(28)} nginx ${n.rps.toFixed(0).padStart(7)}  espra ${e.rps.toFixed(0).padStart(7)} req/s  espra/nginx ${ratio.toFixed(2)}x best, ${(em.rps / nm.rps).toFixed(2)}x median (target >= ${c.target.toFixed(1)}: ${ratio >= c.target ? 'met' : 'MISSED'}); p99 ${(em.p99Ms / nm.p99Ms).toFixed(2)}x median; per server core ${perCore.toFixed(2)}x`)
    for (const [name, m] of best) console.log(`  best    ${formatMeasured(name, m)}`)
    for (const [name, m] of median) console.log(`  median  ${formatMeasured(name, m)}`)
  }
  console.log(`req/s (load average after: ${loadAverage()}):`)
  for (const line of results) console.log(line)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
