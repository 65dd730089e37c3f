/**
 * The state directory `espra-node up` writes and `espra-node admin` reads:
 * `<data-dir>/secret` (0600) and `<data-dir>/cluster.json` (where the seed is).
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RoleName } from '../core/config.js'
import { fileInTheWay } from '../core/config-parsers.js'
import { createError } from '../core/errors.js'

export interface ClusterFile {
  /** Meta address of the seed, host:port. */
  seed: string
  /** pid of the `espra-node up` process that owns this cluster. */
  upPid: number
  startedAt: string
  nodes: { role: RoleName; port: number; metricsPort: number; pid: number; log: string }[]
}

export const clusterFilePath = (dataDir: string): string => join(dataDir, 'cluster.json')
export const secretPath = (dataDir: string): string => join(dataDir, 'secret')

/** Throws, naming the option, when a regular file keeps `dir` from being a directory; creates nothing. */
export function checkDataDir(dir: string, option = '--data-dir'): void {
  const blocker = fileInTheWay(dir)
  if (blocker !== null) throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: `cannot use ${dir}: ${blocker} is a file, not a directory`, dir })
}

/**
 * Creates `dir` (and its parents) with mode 0700. A path that cannot be a
 * directory (a regular file in the way, no permission) is one line naming
 * the option, exit 2, instead of the raw mkdir error.
 */
export function makeDataDir(dir: string, option = '--data-dir'): void {
  checkDataDir(dir, option)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    const why = code === 'EACCES' || code === 'EPERM' ? 'no permission' : code
    throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: `cannot create ${dir}: ${why}`, dir })
  }
}

/** Creates the state directory (0700) and a cluster secret (0600) unless one exists. */
export function ensureStateDir(dataDir: string): { secretFile: string; created: boolean } {
  makeDataDir(dataDir)
  makeDataDir(join(dataDir, 'logs'))
  const secretFile = secretPath(dataDir)
  try {
    writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 })
    return { secretFile, created: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const mode = statSync(secretFile).mode
  if ((mode & 0o077) !== 0) {
    throw createError('ESPRA_ERR_SECRET_INSECURE', {
      option: '--data-dir', file: secretFile, mode: (mode & 0o777).toString(8).padStart(4, '0'), fix: `chmod 600 ${secretFile}`,
    })
  }
  return { secretFile, created: false }
}

export function readClusterFile(dataDir: string): ClusterFile | null {
  try {
    return JSON.parse(readFileSync(clusterFilePath(dataDir), 'utf8')) as ClusterFile
  } catch {
    return null
  }
}

/** Written atomically (temp file + rename) so a reader never sees half a file. */
export function writeClusterFile(dataDir: string, file: ClusterFile): void {
  const path = clusterFilePath(dataDir)
  writeFileSync(`${path}.tmp`, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 })
  renameSync(`${path}.tmp`, path)
}
