/**
 * `espra-node up`: a whole cluster on this machine. One seed, then one node of
 * every other role, each a real `espra-node --role=…` parent process with its
 * children, kept running (a node that dies is started again with backoff,
 * lib/cli/up-node.ts). Ctrl-C stops the nodes first and the seed last.
 *
 * Sized for a laptop, not for the machine's core count: one child per node
 * and two app worker threads unless `--children` says otherwise, so the
 * whole cluster stays well under 1 GB of RSS on any machine.
 */
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ROLE_NAMES, type RoleName } from '../core/config.js'
import { createError } from '../core/errors.js'
import { datastoreUrl, isPostgres, maskPostgresUrl } from '../core/options-datastore.js'
import { checkDataDir, clusterFilePath, ensureStateDir, readClusterFile, writeClusterFile, type ClusterFile } from './cluster-file.js'
import { ensureUpAdminToken } from './up-admin-token.js'
import { startUpNode, type UpNode } from './up-node.js'
import { assertUpPortsFree, MAX_PORT_BASE, UP_PORT_SPAN, upPorts, type UpPorts } from './up-ports.js'

export interface UpOptions {
  dataDir: string
  children?: string
  portBase?: string
  logLevel: string
  /** False (`--no-sample-app`): leave the cluster without a build when it has none. */
  sampleApp: boolean
  /** `embedded` (the default) or a `postgres://` URL: where the seeds keep durable records and tasks. */
  datastore?: string
  /** How many seeds (more than one needs a PostgreSQL datastore). */
  seeds?: string
}

/** Seeds `up --seeds` runs at most. */
export const MAX_UP_SEEDS = 4

/**
 * The ports of seed `i` (0 is the first, on the ports of {@link upPorts}).
 * With `--port-base B` the others come after the cluster's block: B+17,
 * B+18, B+19 for the second (meta, public, metrics), then the next three;
 * without it, meta 7000+2i, public 7001+2i, metrics 8001+2i (7002, 7003,
 * 8003 for the second), clear of every default port.
 */
export function extraSeedPorts(ports: UpPorts, i: number): { meta: number; port: number; metricsPort: number } {
  if (ports.base === null) return { meta: ports.meta + 2 * i, port: ports.roles.seed + 2 * i, metricsPort: ports.metrics.seed + 2 * i }
  const first = ports.base + UP_PORT_SPAN + 3 * (i - 1)
  return { meta: first, port: first + 1, metricsPort: first + 2 }
}

/** Children per node under `up` unless `--children` is given. */
export const UP_CHILDREN = 1
/** Worker threads of the app node's child under `up` (the app's own default is the CPU count). */
export const UP_APP_THREADS = 2

const LOCAL = '127.0.0.1'
/** The fileserver's --files-host under up: browsers resolve *.localhost to loopback, and it is an origin apart from 127.0.0.1. */
const FILES_HOST = 'files.localhost'
/** examples/sample-app at the package root (two levels above lib/cli, three above dist/lib/cli). */
export const SAMPLE_APP_DIR: string = [new URL('../../examples/sample-app/', import.meta.url), new URL('../../../examples/sample-app/', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((dir) => existsSync(join(dir, 'espra.json'))) ?? ''

function usage(option: string, reason: string): never {
  throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: reason })
}

function intOption(raw: string | undefined, option: string, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < min || n > max) usage(option, `must be an integer from ${min} to ${max} (got '${raw}')`)
  return n
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function runUp(opts: UpOptions): Promise<void> {
  const dataDir = resolve(opts.dataDir)
  const children = intOption(opts.children, '--children', 1, 256) ?? UP_CHILDREN
  const seedCount = intOption(opts.seeds, '--seeds', 1, MAX_UP_SEEDS) ?? 1
  const datastore = opts.datastore ?? (process.env['ESPRA_DATASTORE'] || 'embedded')
  try {
    datastoreUrl(datastore)
  } catch (reason) {
    usage('--datastore', String(reason))
  }
  if (seedCount > 1 && !isPostgres(datastore)) {
    usage('--seeds', `${seedCount} seeds need --datastore postgres://… (one embedded store lives in one seed's data directory and cannot be shared)`)
  }
  const ports = upPorts(intOption(opts.portBase, '--port-base', 1024, MAX_PORT_BASE - 3 * (seedCount - 1)))
  const seedPorts = [...Array(seedCount).keys()].map((i) => (i === 0 ? { meta: ports.meta, port: ports.roles.seed, metricsPort: ports.metrics.seed } : extraSeedPorts(ports, i)))
  checkDataDir(dataDir)
  const existing = readClusterFile(dataDir)
  if (existing && existing.upPid !== process.pid && alive(existing.upPid)) {
    usage('--data-dir', `a cluster is already running from ${dataDir} (espra-node up, pid ${existing.upPid})`)
  }
  // Every port before anything is written or started.
  await assertUpPortsFree(LOCAL, {
    ...ports,
    all: [...ports.all, ...seedPorts.slice(1).flatMap((p, i) => [
      { port: p.meta, what: `seed ${i + 2} meta port` }, { port: p.port, what: `seed ${i + 2} port` }, { port: p.metricsPort, what: `seed ${i + 2} metrics port` },
    ])],
  })
  // The seeds read it from the environment (ESPRA_DATASTORE), so the password is on no command line (ps); other nodes ignore it.
  if (isPostgres(datastore)) process.env['ESPRA_DATASTORE'] = datastore
  const { secretFile, created } = ensureStateDir(dataDir)
  if (created) console.log(`created cluster secret ${secretFile} (mode 0600)`)
  const adminToken = ensureUpAdminToken(dataDir)
  if (adminToken.created) console.log(`created admin API token ${adminToken.tokenFile} (mode 0600)`)

  const seedAddrs = seedPorts.map((p) => `${LOCAL}:${p.meta}`)
  const seedAddr = seedAddrs.join(',')
  // Where a browser on this machine reaches the fileserver and the proxy's live host (*.localhost is loopback).
  // Uploaded files get an origin of their own (--files-host): never served as pages of the app's origin.
  const filesUrl = `http://${FILES_HOST}:${ports.roles.fileserver}`
  const appSettings = { assetsUrl: `http://${LOCAL}:${ports.roles.fileserver}`, filesUrl, liveUrl: `ws://us-1.live.localhost:${ports.roles.proxy}` }
  const nodes: UpNode[] = []
  let clusterUp = false
  const startedAt = new Date().toISOString()
  const recordNodes = (): void => {
    if (!clusterUp) return
    const file: ClusterFile = {
      seed: seedAddr,
      upPid: process.pid,
      startedAt,
      nodes: nodes.map((n) => ({ role: n.role, port: n.port, metricsPort: n.metricsPort, pid: n.pid(), log: n.log })),
    }
    writeClusterFile(dataDir, file)
  }
  /** `seed`: which seed (0 is the first); every seed is given its own address, other nodes the whole list. */
  const start = (role: RoleName, seed = 0): UpNode => {
    const log = join(dataDir, 'logs', seed === 0 ? `${role}.log` : `${role}-${seed + 1}.log`)
    const own = role === 'seed' ? seedPorts[seed]! : { meta: ports.meta, port: ports.roles[role], metricsPort: ports.metrics[role] }
    const args = [
      process.argv[1]!, `--role=${role}`, `--seed=${role === 'seed' ? seedAddrs[seed] : seedAddr}`, `--meta-port=${own.meta}`,
      `--port=${own.port}`, `--metrics-port=${own.metricsPort}`, `--live-link-offset=${ports.liveLinkOffset}`,
      // The port plan holds one Live link port, the parent's: the default, --live-homes children, takes two per child.
      ...(role === 'live' ? ['--live-homes=node'] : []),
      ...(role === 'seed' && seedCount > 1 ? [`--node-id=seed-${seed + 1}`] : []),
      `--bind=${LOCAL}`, `--advertise=${LOCAL}`, `--data-dir=${dataDir}`,
      `--secret-file=${secretFile}`, `--log-level=${opts.logLevel}`, `--children=${children}`,
      ...(role === 'app' ? [`--threads=${UP_APP_THREADS}`, `--app-settings=${JSON.stringify(appSettings)}`] : []),
      ...(role === 'fileserver' ? [`--files-host=${FILES_HOST}`] : []),
      ...(role === 'admin' ? [`--admin-tokens-file=${adminToken.tokensFile}`] : []),
      // Mail to anyone@localhost reaches the sample app's handleMail.
      ...(role === 'mail' ? [`--smtp-port=${ports.smtp}`, '--mail-domains=localhost'] : []),
      // Outbound mail goes back into this cluster's own SMTP port: mail to @localhost arrives in the app, anything else
      // is refused there and bounces to its sender; nothing leaves the machine.
      ...(role === 'mail' ? [`--smtp-relay=smtp://${LOCAL}:${ports.smtp}`, '--mail-hostname=localhost'] : []),
    ]
    const node = startUpNode({ role, port: own.port, metricsPort: own.metricsPort, log, args, say: (line) => console.log(line), onRestarted: recordNodes })
    nodes.push(node)
    return node
  }

  let stopping = false
  const stop = async (exitCode: number): Promise<never> => {
    stopping = true
    const others = nodes.filter((n) => n.role !== 'seed')
    await Promise.all(others.map((n) => n.stop()))
    for (const n of nodes.filter((n) => n.role === 'seed')) await n.stop()
    rmSync(clusterFilePath(dataDir), { force: true })
    console.log('cluster stopped')
    process.exit(exitCode)
  }
  const onSignal = (): void => {
    if (stopping) {
      console.log('forcing stop')
      for (const n of nodes) n.kill()
      process.exit(1)
    }
    console.log('stopping cluster (Ctrl-C again to force)')
    void stop(0)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const where = ports.base === null ? 'the default ports' : `ports ${ports.base}-${ports.base + ports.all.length - 1}`
  const seedsText = seedCount === 1 ? 'a seed' : `${seedCount} seeds`
  const storeText = isPostgres(datastore) ? ` (datastore ${maskPostgresUrl(datastore)})` : ''
  console.log(`starting ${seedsText}${storeText} and ${ROLE_NAMES.length - 1} nodes, ${children} ${children === 1 ? 'child' : 'children'} each, on ${where}`)
  try {
    // Seeds one after the other: the first takes the lease, so which one leads is predictable.
    for (let i = 0; i < seedCount; i++) await start('seed', i).ready
    await Promise.all(ROLE_NAMES.filter((r) => r !== 'seed').map((r) => start(r).ready))
  } catch (err) {
    console.error(`espra-node up: ${(err as Error).message}`)
    return stop(1)
  }
  clusterUp = true
  recordNodes()
  for (const n of nodes) n.supervise()

  const sample = opts.sampleApp ? await pushSampleApp(seedAddr, secretFile) : 'off'
  const leads = seedCount > 1 ? await whoLeads(seedAddr, secretFile) : null
  console.log(`\ncluster up (state in ${dataDir})\n`)
  console.log(`${'role'.padEnd(11)} ${'listens on'.padEnd(28)} ${'metrics'.padEnd(36)} ${'pid'.padEnd(8)} log`)
  seedAddrs.forEach((addr, i) => {
    const id = `seed-${i + 1}`
    const lead = leads === null ? '' : leads.id === id ? `  ${id}, leads (epoch ${leads.epoch})` : `  ${id}, follower`
    console.log(`${'seed meta'.padEnd(11)} ${`tcp://${addr}`.padEnd(28)}${lead}`)
  })
  if (leads !== null && !seedAddrs.some((_a, i) => leads.id === `seed-${i + 1}`)) console.log(`seeds: ${leads.line}`)
  for (const n of nodes) {
    console.log(
      `${n.role.padEnd(11)} ${`http://${LOCAL}:${n.port}`.padEnd(28)} ${`http://${LOCAL}:${n.metricsPort}/metrics`.padEnd(36)} ${String(n.pid()).padEnd(8)} ${n.log}`,
    )
  }
  console.log(`${'files'.padEnd(11)} ${filesUrl}/f/  (uploaded files, on a host of their own)`)
  console.log(`${'smtp'.padEnd(11)} smtp://${LOCAL}:${ports.smtp}  (inbound mail for anyone@localhost; outbound mail is relayed here too, nothing leaves the machine)`)
  console.log(`${'admin API'.padEnd(11)} http://${LOCAL}:${ports.roles.admin}/api/  (token in ${adminToken.tokenFile}: curl -H "Authorization: Bearer $(cat ${adminToken.tokenFile})" http://${LOCAL}:${ports.roles.admin}/api/status)`)
  console.log(`${'dashboard'.padEnd(11)} http://${LOCAL}:${ports.roles.admin}/dashboard/  (log in with the token in ${adminToken.tokenFile})`)
  if (sample === 'pushed') console.log(`\nsample app (pushed as the first build): open http://${LOCAL}:${ports.roles.app}/`)
  console.log('\nespra-node admin status   shows every node. A node that dies is started again. Ctrl-C stops the cluster.')
}

/** Which seed leads, from `admin status` (`leader: seed-1 at 127.0.0.1:7000 (epoch 1, lease 2000 ms)`). */
async function whoLeads(seedAddr: string, secretFile: string): Promise<{ id: string; epoch: number; line: string }> {
  const status = await admin(['status'], seedAddr, secretFile)
  const line = /^leader: .*$/m.exec(status.stdout)?.[0] ?? `leader: unknown (admin status: ${status.stderr.trim() || `exit ${status.code}`})`
  const m = /^leader: (\S+) at \S+ \(epoch (\d+)/.exec(line)
  return { id: m?.[1] ?? '', epoch: Number(m?.[2] ?? 0), line }
}

/** Runs this same binary's `admin` CLI against the new cluster. */
function admin(args: string[], seedAddr: string, secretFile: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'admin', ...args, `--seed=${seedAddr}`, `--secret-file=${secretFile}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => (stdout += d))
    proc.stderr.on('data', (d: Buffer) => (stderr += d))
    proc.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/**
 * Pushes examples/sample-app when the cluster has no build yet, so a new
 * user sees every role work; a cluster with builds is left as it is. A
 * failure is reported and the cluster stays up.
 */
async function pushSampleApp(seedAddr: string, secretFile: string): Promise<'pushed' | 'kept' | 'off'> {
  if (SAMPLE_APP_DIR === '') {
    console.error('sample app not found next to this espra-node; not pushed')
    return 'off'
  }
  const listed = await admin(['builds', '--json'], seedAddr, secretFile)
  if (listed.code !== 0) {
    console.error(`sample app not pushed: admin builds failed: ${listed.stderr.trim()}`)
    return 'off'
  }
  if ((JSON.parse(listed.stdout) as unknown[]).length > 0) return 'kept'
  const pushed = await admin(['push-build', SAMPLE_APP_DIR, '--message', 'the sample app (examples/sample-app)'], seedAddr, secretFile)
  if (pushed.code !== 0) {
    console.error(`sample app not pushed: ${pushed.stderr.trim()}`)
    return 'off'
  }
  return 'pushed'
}
