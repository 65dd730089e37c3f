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
import { EspraError } from '../core/errors.js'
import { checkDataDir, clusterFilePath, ensureStateDir, readClusterFile, writeClusterFile, type ClusterFile } from './cluster-file.js'
import { ensureUpAdminToken } from './up-admin-token.js'
import { startUpNode, type UpNode } from './up-node.js'
import { assertUpPortsFree, MAX_PORT_BASE, upPorts } from './up-ports.js'

export interface UpOptions {
  dataDir: string
  children?: string
  portBase?: string
  logLevel: string
  /** False (`--no-sample-app`): leave the cluster without a build when it has none. */
  sampleApp: boolean
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
  throw new EspraError('ESPRA_ERR_CONFIG_INVALID', `${option}: ${reason}`, { option })
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
  const ports = upPorts(intOption(opts.portBase, '--port-base', 1024, MAX_PORT_BASE))
  checkDataDir(dataDir)
  const existing = readClusterFile(dataDir)
  if (existing && existing.upPid !== process.pid && alive(existing.upPid)) {
    usage('--data-dir', `a cluster is already running from ${dataDir} (espra-node up, pid ${existing.upPid})`)
  }
  // Every port before anything is written or started.
  await assertUpPortsFree(LOCAL, ports)
  const { secretFile, created } = ensureStateDir(dataDir)
  if (created) console.log(`created cluster secret ${secretFile} (mode 0600)`)
  const adminToken = ensureUpAdminToken(dataDir)
  if (adminToken.created) console.log(`created admin API token ${adminToken.tokenFile} (mode 0600)`)

  const seedAddr = `${LOCAL}:${ports.meta}`
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
  const start = (role: RoleName): UpNode => {
    const log = join(dataDir, 'logs', `${role}.log`)
    const args = [
      process.argv[1]!, `--role=${role}`, `--seed=${seedAddr}`, `--meta-port=${ports.meta}`,
      `--port=${ports.roles[role]}`, `--metrics-port=${ports.metrics[role]}`, `--live-link-offset=${ports.liveLinkOffset}`,
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
    const node = startUpNode({ role, port: ports.roles[role], metricsPort: ports.metrics[role], log, args, say: (line) => console.log(line), onRestarted: recordNodes })
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
  console.log(`starting a seed and ${ROLE_NAMES.length - 1} nodes, ${children} ${children === 1 ? 'child' : 'children'} each, on ${where}`)
  try {
    await start('seed').ready
    await Promise.all(ROLE_NAMES.filter((r) => r !== 'seed').map((r) => start(r).ready))
  } catch (err) {
    console.error(`espra-node up: ${(err as Error).message}`)
    return stop(1)
  }
  clusterUp = true
  recordNodes()
  for (const n of nodes) n.supervise()

  const sample = opts.sampleApp ? await pushSampleApp(seedAddr, secretFile) : 'off'
  console.log(`\ncluster up (state in ${dataDir})\n`)
  console.log(`${'role'.padEnd(11)} ${'listens on'.padEnd(28)} ${'metrics'.padEnd(36)} ${'pid'.padEnd(8)} log`)
  console.log(`${'seed meta'.padEnd(11)} ${`tcp://${seedAddr}`.padEnd(28)}`)
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
