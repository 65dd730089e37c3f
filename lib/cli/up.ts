/**
 * `espra-node up`: a whole cluster on this machine. One seed, then one node of
 * every other role, each a real `espra-node --role=…` parent process with its
 * children. Ctrl-C stops the nodes first and the seed last.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_PORTS, ROLE_NAMES, type RoleName } from '../core/config.js'
import { EspraError } from '../core/errors.js'
import { assertPortFree } from '../http/ports.js'
import { clusterFilePath, ensureStateDir, readClusterFile, writeClusterFile, type ClusterFile } from './cluster-file.js'

export interface UpOptions {
  dataDir: string
  children?: string
  portBase?: string
  logLevel: string
  /** False (`--no-sample-app`): leave the cluster without a build when it has none. */
  sampleApp: boolean
}

interface RunningNode {
  role: RoleName
  port: number
  metricsPort: number
  log: string
  proc: ChildProcess
  exited: Promise<number | null>
}

const START_TIMEOUT_MS = 30_000
const LOCAL = '127.0.0.1'
/** The fileserver's --files-host under up: browsers resolve *.localhost to loopback, and it is an origin apart from 127.0.0.1. */
const FILES_HOST = 'files.localhost'
/** examples/sample-app at the package root (two levels above lib/cli, three above dist/lib/cli). */
export const SAMPLE_APP_DIR: string = [new URL('../../examples/sample-app/', import.meta.url), new URL('../../../examples/sample-app/', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((dir) => existsSync(join(dir, 'espra.json'))) ?? ''

/** Meta port and each role's public port: the defaults, or consecutive ports from --port-base. */
export function upPorts(portBase?: number): { meta: number; roles: Record<RoleName, number> } {
  if (portBase === undefined) return { meta: 7000, roles: { ...DEFAULT_PORTS } }
  const roles = Object.fromEntries(ROLE_NAMES.map((r, i) => [r, portBase + 1 + i])) as Record<RoleName, number>
  return { meta: portBase, roles }
}

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

async function waitHealthy(node: RunningNode): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  let exitCode: number | null | undefined
  void node.exited.then((code) => (exitCode = code))
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`${node.role} exited with code ${exitCode} while starting; see ${node.log}`)
    try {
      const res = await fetch(`http://${LOCAL}:${node.port}/_espra/health`, { signal: AbortSignal.timeout(1000) })
      if (res.status === 200) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${node.role} did not become healthy within ${START_TIMEOUT_MS / 1000}s; see ${node.log}`)
}

export async function runUp(opts: UpOptions): Promise<void> {
  const dataDir = resolve(opts.dataDir)
  const children = intOption(opts.children, '--children', 1, 256)
  const ports = upPorts(intOption(opts.portBase, '--port-base', 1024, 65535 - 1000 - ROLE_NAMES.length))
  const existing = readClusterFile(dataDir)
  if (existing && existing.upPid !== process.pid && alive(existing.upPid)) {
    usage('--data-dir', `a cluster is already running from ${dataDir} (espra-node up, pid ${existing.upPid})`)
  }
  const { secretFile, created } = ensureStateDir(dataDir)
  if (created) console.log(`created cluster secret ${secretFile} (mode 0600)`)

  await assertPortFree(LOCAL, ports.meta, 'meta port')
  for (const role of ROLE_NAMES) {
    await assertPortFree(LOCAL, ports.roles[role], `${role} port`)
    await assertPortFree(LOCAL, ports.roles[role] + 1000, `${role} metrics port`)
  }

  const seedAddr = `${LOCAL}:${ports.meta}`
  // Where a browser on this machine reaches the fileserver and the proxy's live host (*.localhost is loopback).
  // Uploaded files get an origin of their own (--files-host): never served as pages of the app's origin.
  const filesUrl = `http://${FILES_HOST}:${ports.roles.fileserver}`
  const appSettings = { assetsUrl: `http://${LOCAL}:${ports.roles.fileserver}`, filesUrl, liveUrl: `ws://us-1.live.localhost:${ports.roles.proxy}` }
  const nodes: RunningNode[] = []
  const start = (role: RoleName): RunningNode => {
    const log = join(dataDir, 'logs', `${role}.log`)
    const fd = openSync(log, 'a', 0o600)
    const args = [
      ...process.execArgv, process.argv[1]!, `--role=${role}`, `--seed=${seedAddr}`, `--meta-port=${ports.meta}`,
      `--port=${ports.roles[role]}`, `--bind=${LOCAL}`, `--advertise=${LOCAL}`, `--data-dir=${dataDir}`,
      `--secret-file=${secretFile}`, `--log-level=${opts.logLevel}`, ...(children ? [`--children=${children}`] : []),
      ...(role === 'app' ? [`--app-settings=${JSON.stringify(appSettings)}`] : []),
      ...(role === 'fileserver' ? [`--files-host=${FILES_HOST}`] : []),
    ]
    // Own process group, so Ctrl-C reaches only `up`, which stops the nodes in order.
    const proc = spawn(process.execPath, args, { stdio: ['ignore', fd, fd, 'ipc'], detached: true, env: { ...process.env, ESPRA_UP: '1' } })
    closeSync(fd)
    const exited = new Promise<number | null>((r) => proc.once('exit', (code, signal) => r(code ?? (signal ? 128 : null))))
    const node = { role, port: ports.roles[role], metricsPort: ports.roles[role] + 1000, log, proc, exited }
    nodes.push(node)
    return node
  }

  let stopping = false
  const stop = async (exitCode: number): Promise<never> => {
    stopping = true
    const others = nodes.filter((n) => n.role !== 'seed')
    for (const n of others) n.proc.kill('SIGTERM')
    await Promise.all(others.map((n) => n.exited))
    for (const n of nodes.filter((n) => n.role === 'seed')) {
      n.proc.kill('SIGTERM')
      await n.exited
    }
    rmSync(clusterFilePath(dataDir), { force: true })
    console.log('cluster stopped')
    process.exit(exitCode)
  }
  const onSignal = (): void => {
    if (stopping) {
      console.log('forcing stop')
      for (const n of nodes) n.proc.kill('SIGKILL')
      process.exit(1)
    }
    console.log('stopping cluster (Ctrl-C again to force)')
    void stop(0)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    await waitHealthy(start('seed'))
    await Promise.all(ROLE_NAMES.filter((r) => r !== 'seed').map((r) => waitHealthy(start(r))))
  } catch (err) {
    console.error(`espra-node up: ${(err as Error).message}`)
    return stop(1)
  }

  const file: ClusterFile = {
    seed: seedAddr,
    upPid: process.pid,
    startedAt: new Date().toISOString(),
    nodes: nodes.map((n) => ({ role: n.role, port: n.port, metricsPort: n.metricsPort, pid: n.proc.pid!, log: n.log })),
  }
  writeClusterFile(dataDir, file)
  const sample = opts.sampleApp ? await pushSampleApp(seedAddr, secretFile) : 'off'
  console.log(`cluster up (state in ${dataDir})\n`)
  console.log(`${'role'.padEnd(11)} ${'listens on'.padEnd(28)} ${'metrics'.padEnd(28)} ${'pid'.padEnd(8)} log`)
  console.log(`${'seed meta'.padEnd(11)} ${`tcp://${seedAddr}`.padEnd(28)}`)
  for (const n of file.nodes) {
    console.log(
      `${n.role.padEnd(11)} ${`http://${LOCAL}:${n.port}`.padEnd(28)} ${`http://${LOCAL}:${n.metricsPort}/metrics`.padEnd(28)} ${String(n.pid).padEnd(8)} ${n.log}`,
    )
  }
  console.log(`${'files'.padEnd(11)} ${filesUrl}/f/  (uploaded files, on a host of their own)`)
  if (sample === 'pushed') console.log(`\nsample app (pushed as the first build): open http://${LOCAL}:${ports.roles.app}/`)
  console.log('\nespra-node admin status   shows every node. Ctrl-C stops the cluster.')

  for (const n of nodes) {
    void n.exited.then((code) => {
      if (!stopping) console.error(`${n.role} node (pid ${n.proc.pid}) exited with code ${code}; see ${n.log}`)
    })
  }
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
